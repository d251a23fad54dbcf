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
        /// The admin doing it (audited; default: the OS user).
        #[arg(long)]
        by: Option<String>,
    },
    /// Users, their roles and whether they are active (no hashes).
    List,
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
            let u = id.add_user(&by(b), &user_id, &name, role, &team, &password).await?;
            println!("added {} ({}, team {:?})", u.user_id, u.role.as_str(), u.team);
        }
        Command::List => {
            println!("{:<24} {:<11} {:<16} {:<8} name", "user", "role", "team", "state");
            for (u, active) in id.users().await? {
                println!(
                    "{:<24} {:<11} {:<16} {:<8} {}",
                    u.user_id,
                    u.role.as_str(),
                    u.team,
                    if active { "active" } else { "disabled" },
                    u.display_name
                );
            }
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
