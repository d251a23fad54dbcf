//! `opptak users`: local users of the embedded mode (Argon2id passwords, one role each; admin actions audited).

use anyhow::Result;
use clap::Subcommand;
use opptak::app::Edges;
use opptak::config::Config;

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Add a user; the password is read from standard input (never an argument).
    Add {
        user_id: String,
        #[arg(long)]
        name: String,
        /// advisor, team-lead, qa, compliance, auditor or admin.
        #[arg(long)]
        role: String,
        #[arg(long, default_value = "")]
        team: String,
        /// The admin doing it (audited as `cli:<by>`; default: the OS user).
        /// A user of a content role waits for another admin's approval.
        #[arg(long)]
        by: Option<String>,
    },
    /// Users, their roles, whether they are active or wait for approval (no hashes).
    List,
    /// Approve a user whose role reads call content, as a second admin
    /// (not the one who created it). `--by` is a local admin user whose
    /// password is read from standard input.
    Approve {
        user_id: String,
        #[arg(long)]
        by: String,
    },
    /// Disable a user and end their sessions.
    Disable {
        user_id: String,
        #[arg(long)]
        by: Option<String>,
    },
    /// Set a new password, read from standard input.
    Passwd {
        user_id: String,
        #[arg(long)]
        by: Option<String>,
    },
}

pub(crate) async fn run(config: Config, command: Command) -> Result<()> {
    use opptak_review::identity::{Identity, Role};
    let edges = Edges::open(config).await?;
    let id = Identity::open(&edges.review()).await?;
    let by = |b: Option<String>| b.unwrap_or_else(opptak_audit::os_user);
    match command {
        Command::Add {
            user_id,
            name,
            role,
            team,
            by: b,
        } => {
            let role = Role::parse(&role)?;
            let password = super::password_from_stdin()?;
            // The command line is not signed in: its actor is marked as such,
            // so no web admin shares its name and can count as its second.
            let creator = format!("cli:{}", by(b));
            let u = id.add_user(&creator, &user_id, &name, role, &team, &password).await?;
            println!("added {} ({}, team {:?})", u.user_id, u.role.as_str(), u.team);
            if role.reads_content() {
                println!(
                    "{} reads call content: it can sign in once another admin approves it \
                     (the web page Users, or: opptak users approve {} --by <admin>)",
                    u.user_id, u.user_id
                );
            }
        }
        Command::List => {
            println!(
                "{:<24} {:<11} {:<16} {:<9} {:<24} name",
                "user", "role", "team", "state", "created by"
            );
            for l in id.listing().await? {
                println!(
                    "{:<24} {:<11} {:<16} {:<9} {:<24} {}",
                    l.user.user_id,
                    l.user.role.as_str(),
                    l.user.team,
                    match (l.active, l.waiting) {
                        (false, _) => "disabled",
                        (true, true) => "waiting",
                        (true, false) => "active",
                    },
                    l.created_by,
                    l.user.display_name
                );
            }
        }
        Command::Approve { user_id, by } => {
            let password = super::password_from_stdin()?;
            let admin = id.authenticate(&by, &password, Role::Admin, "user.approve").await?;
            id.approve_user(&admin.actor(), &user_id).await?;
            println!("{user_id} approved by {}; it can sign in now", admin.actor());
        }
        Command::Disable { user_id, by: b } => {
            id.disable(&by(b), &user_id).await?;
            println!("disabled {user_id}; their sessions ended");
        }
        Command::Passwd { user_id, by: b } => {
            let password = super::password_from_stdin()?;
            id.set_password(&by(b), &user_id, &password).await?;
            println!("password of {user_id} changed");
        }
    }
    Ok(())
}
