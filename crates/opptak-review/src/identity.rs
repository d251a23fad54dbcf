//! Who may do what (issue 6 item 4), for the embedded mode's local users:
//! passwords hashed with Argon2id (PHC strings with their own salt and
//! parameters), one [`Role`] per user, and web sessions whose random token
//! is kept only as its SHA-256. Every admin action is written to the audit
//! log; a failed login is logged as refused without saying whether the user
//! exists. (OIDC bearer tokens for production arrive with the HTTP service.)
//!
//! Granting content takes two administrators: a user of a role that reads
//! content waits for a second admin's approval when added, and again when
//! enabled after being disabled or given a new role or team (the admin who
//! asked cannot approve). Teams come from a list the admin manages
//! ([`Identity::teams`]); an admin cannot disable themselves or change
//! their own role. Failures are [`AdminError`]s, audited as "failed" with
//! their code.

use anyhow::{bail, Context, Result};
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use opptak_domain::time::Clock;
use opptak_store::users::{SqlUsers, UserRow};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The roles of issue 6; each user has exactly one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Their own calls' drafts, transcripts and audio.
    Advisor,
    /// Their team's calls.
    TeamLead,
    /// Sampled items only.
    Qa,
    /// Archive, holds, disclosures.
    Compliance,
    /// The audit log only.
    Auditor,
    /// Users and configuration, never content.
    Admin,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Advisor,
        Role::TeamLead,
        Role::Qa,
        Role::Compliance,
        Role::Auditor,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Advisor => "advisor",
            Role::TeamLead => "team-lead",
            Role::Qa => "qa",
            Role::Compliance => "compliance",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .with_context(|| format!("unknown role {s:?}: one of advisor, team-lead, qa, compliance, auditor, admin"))
    }

    /// Whether this role may ever see call content (audio, transcripts, drafts).
    pub fn reads_content(self) -> bool {
        matches!(self, Role::Advisor | Role::TeamLead | Role::Qa | Role::Compliance)
    }
}

/// A signed-in user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub user_id: String,
    pub display_name: String,
    pub role: Role,
    pub team: String,
    /// Signed in here (a local user) or speaking through the identity
    /// provider's token.
    pub source: Source,
}

/// Where a [`User`] comes from: the two are separate namespaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Local,
    Oidc,
}

impl User {
    /// The name the audit log and decisions record: a token's user is
    /// `oidc:<id>`, so a token for `sub = admin` can never pass for the local
    /// user `admin`. (Whose calls an advisor reads is still `user_id`: it
    /// must equal the advisor id on the calls.)
    pub fn actor(&self) -> String {
        match self.source {
            Source::Local => self.user_id.clone(),
            Source::Oidc => format!("oidc:{}", self.user_id),
        }
    }

    fn from_row(r: &UserRow) -> Result<Self> {
        Ok(Self {
            user_id: r.user_id.clone(),
            display_name: r.display_name.clone(),
            role: Role::parse(&r.role)?,
            team: r.team.clone(),
            source: Source::Local,
        })
    }
}

/// A user as `opptak users list` and the admin page show it.
#[derive(Clone, Debug)]
pub struct UserListing {
    pub user: User,
    pub active: bool,
    /// The admin whose change waits for approval (the creator for a new user).
    pub asked_by: String,
    /// Its role reads content and no second admin approved it yet.
    pub waiting: bool,
    pub created_by: String,
    pub approved_by: Option<String>,
}

/// Why an admin action was not done, for the admin page to name it (in
/// the page language) and keep the form: the methods below return these
/// inside their `anyhow::Error` (`downcast_ref`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdminError {
    #[error("user id {0:?}: 1 to 64 letters, digits, '.', '_' or '-'")]
    InvalidId(String),
    #[error("passwords need at least {MIN_PASSWORD} characters")]
    ShortPassword,
    #[error("user {0} exists")]
    UserExists(String),
    #[error("no user {0}")]
    NoSuchUser(String),
    #[error(
        "{0} is the advisor on recorded calls: only an advisor account may have that id \
         (and a second admin must approve it)"
    )]
    AdvisorsId(String),
    #[error("{0} asked for this: a second, different administrator must approve it")]
    SameAdmin(String),
    #[error("user {0} needs no approval")]
    NoApprovalNeeded(String),
    #[error("an administrator cannot disable themselves or change their own role")]
    Yourself,
    #[error("user {0} is not active")]
    NotActive(String),
    #[error("user {0} is not disabled")]
    NotDisabled(String),
    #[error("unknown team {0:?}: add it to the teams first")]
    UnknownTeam(String),
    #[error("team {0:?}: 1 to 64 letters, digits, spaces, '.', '_' or '-'")]
    InvalidTeam(String),
    #[error("team {0} exists")]
    TeamExists(String),
}

impl AdminError {
    /// What the audit log records as the reason (the auditor's page names
    /// it in the page language).
    pub fn code(&self) -> &'static str {
        match self {
            AdminError::InvalidId(_) => "invalid-id",
            AdminError::ShortPassword => "short-password",
            AdminError::UserExists(_) => "user-exists",
            AdminError::NoSuchUser(_) => "no-such-user",
            AdminError::AdvisorsId(_) => "advisors-id",
            AdminError::SameAdmin(_) => "same-admin",
            AdminError::NoApprovalNeeded(_) => "no-approval-needed",
            AdminError::Yourself => "yourself",
            AdminError::NotActive(_) => "not-active",
            AdminError::NotDisabled(_) => "not-disabled",
            AdminError::UnknownTeam(_) => "unknown-team",
            AdminError::InvalidTeam(_) => "invalid-team",
            AdminError::TeamExists(_) => "team-exists",
        }
    }
}

/// The audit reason of a change that waits for a second admin.
pub const AWAITING: &str = "awaiting a second admin's approval";

/// How long a web session lasts.
pub const SESSION_HOURS: i64 = 8;
const MIN_PASSWORD: usize = 12;

pub struct Identity {
    users: SqlUsers,
    edges: crate::ReviewEdges,
    clock: Arc<dyn Clock>,
    /// Opened at the first audited event, then shared (one pool, not one per sign-in).
    audit: tokio::sync::OnceCell<opptak_audit::Audit>,
}

pub(crate) fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn valid_team(t: &str) -> bool {
    let t = t.trim();
    !t.is_empty() && t.chars().count() <= 64 && t.chars().all(|c| c.is_alphanumeric() || " ._-".contains(c))
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

impl Identity {
    pub async fn open(edges: &crate::ReviewEdges) -> Result<Self> {
        Ok(Self {
            users: SqlUsers::open(&edges.config.metadata_url).await?,
            edges: edges.clone(),
            clock: edges.vault.clock().clone(),
            audit: tokio::sync::OnceCell::new(),
        })
    }

    async fn audit(&self, actor: &str, role: &str, action: &str, subject: &str, outcome: &str) -> Result<()> {
        self.audit_why(actor, role, action, subject, outcome, "").await
    }

    async fn audit_why(
        &self,
        actor: &str,
        role: &str,
        action: &str,
        subject: &str,
        outcome: &str,
        reason: &str,
    ) -> Result<()> {
        self.audit
            .get_or_try_init(|| self.edges.audit())
            .await?
            .record(&opptak_audit::Event {
                actor: actor.into(),
                role: role.into(),
                action: action.into(),
                subject: subject.into(),
                reason: reason.into(),
                outcome: outcome.into(),
            })
            .await?;
        Ok(())
    }

    /// Adds a user (an admin action, audited under `by`, the admin's actor).
    /// A user of a role that reads call content waits for a second admin's
    /// approval ([`Identity::approve_user`]) before it can sign in. An id
    /// that is the advisor on recorded calls can only become an advisor.
    pub async fn add_user(
        &self,
        by: &str,
        user_id: &str,
        display_name: &str,
        role: Role,
        team: &str,
        password: &str,
    ) -> Result<User> {
        let subject = format!("user:{user_id}");
        let failed = if !valid_id(user_id) {
            Some(AdminError::InvalidId(user_id.into()))
        } else if password.chars().count() < MIN_PASSWORD {
            Some(AdminError::ShortPassword)
        } else if !team.is_empty() && !valid_team(team) {
            Some(AdminError::InvalidTeam(team.into()))
        } else {
            None
        };
        if let Some(e) = failed {
            self.audit_why(by, "admin", "user.create", &subject, "failed", e.code())
                .await?;
            return Err(e.into());
        }
        if role != Role::Advisor && self.users.advises_calls(user_id).await? {
            self.audit_why(
                by,
                "admin",
                "user.create",
                &subject,
                "refused",
                AdminError::AdvisorsId(String::new()).code(),
            )
            .await?;
            return Err(AdminError::AdvisorsId(user_id.into()).into());
        }
        let hash = hash_password(password).await?;
        let row = UserRow {
            user_id: user_id.into(),
            display_name: display_name.into(),
            role: role.as_str().into(),
            team: team.into(),
            password_hash: hash,
            created_at_us: self.clock.now_us(),
            disabled_at_us: None,
            created_by: by.into(),
            approved_by: None,
            approved_at_us: None,
            pending_by: None,
        };
        match self.users.add(&row).await {
            Ok(()) => {}
            Err(opptak_store::StoreError::Conflict(_)) => {
                let e = AdminError::UserExists(user_id.into());
                self.audit_why(by, "admin", "user.create", &subject, "failed", e.code())
                    .await?;
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        }
        // The command line and the demo name teams freely: a team a user
        // is put in is a known team from then on (the web offers only these).
        if !team.is_empty() {
            self.ensure_team(by, team).await?;
        }
        let why = if role.reads_content() {
            format!("role {}; {AWAITING}", role.as_str())
        } else {
            format!("role {}", role.as_str())
        };
        self.audit_why(by, "admin", "user.create", &subject, "allowed", &why)
            .await?;
        User::from_row(&row)
    }

    /// A second administrator's approval of a user whose role reads content:
    /// refused for the admin who created it (two different people grant
    /// access to content), and for a user that needs none.
    pub async fn approve_user(&self, by: &str, user_id: &str) -> Result<()> {
        let subject = format!("user:{user_id}");
        let row = self
            .users
            .get(user_id)
            .await?
            .ok_or_else(|| AdminError::NoSuchUser(user_id.into()))?;
        if !waiting(&row) {
            return Err(AdminError::NoApprovalNeeded(user_id.into()).into());
        }
        if row.pending_by.as_ref().unwrap_or(&row.created_by) == by {
            self.audit_why(
                by,
                "admin",
                "user.approve",
                &subject,
                "refused",
                AdminError::SameAdmin(String::new()).code(),
            )
            .await?;
            return Err(AdminError::SameAdmin(by.into()).into());
        }
        self.users.approve(user_id, by, self.clock.now_us()).await?;
        self.audit(by, "admin", "user.approve", &subject, "allowed").await
    }

    /// Checks a local user's password and role for an action on the command
    /// line (the two officers of a hold release, the second admin of an
    /// approval): the audit's actor is then an authenticated identity, not
    /// free text. Audited either way; a failure does not say why.
    pub async fn authenticate(&self, user_id: &str, password: &str, role: Role, action: &str) -> Result<User> {
        self.authenticate_cli(user_id, password, Some(role), action).await
    }

    /// [`Identity::authenticate`] for a command whose rules depend on the
    /// user's role, whichever it is (`opptak ki show`: the call page's rules).
    pub async fn authenticate_any(&self, user_id: &str, password: &str, action: &str) -> Result<User> {
        self.authenticate_cli(user_id, password, None, action).await
    }

    async fn authenticate_cli(&self, user_id: &str, password: &str, role: Option<Role>, action: &str) -> Result<User> {
        let row = self.users.get(user_id).await?;
        let ok = verify(row.as_ref().map(|r| r.password_hash.clone()), password).await?;
        let subject = format!("user:{user_id}");
        let fit = row
            .filter(|r| ok && r.disabled_at_us.is_none() && !waiting(r))
            .map(|r| User::from_row(&r))
            .transpose()?
            .filter(|u| role.is_none_or(|role| u.role == role));
        let Some(user) = fit else {
            self.audit_why(user_id, "-", "cli.authenticate", &subject, "refused", action)
                .await?;
            match role {
                Some(role) => bail!(
                    "{user_id}: wrong password, or not an active {} (the command needs that role)",
                    role.as_str()
                ),
                None => bail!("{user_id}: wrong password, or not an active user"),
            }
        };
        self.audit_why(
            user_id,
            user.role.as_str(),
            "cli.authenticate",
            &subject,
            "allowed",
            action,
        )
        .await?;
        Ok(user)
    }

    pub async fn set_password(&self, by: &str, user_id: &str, password: &str) -> Result<()> {
        check_password(password)?;
        let hash = hash_password(password).await?;
        self.users.set_password(user_id, &hash).await?;
        self.audit(by, "admin", "user.password", &format!("user:{user_id}"), "allowed")
            .await
    }

    /// Disables a user and ends their sessions; an admin cannot disable
    /// themselves (`by` is the admin's actor; failed, audited).
    pub async fn disable(&self, by: &str, user_id: &str) -> Result<()> {
        let subject = format!("user:{user_id}");
        if by == user_id {
            let e = AdminError::Yourself;
            self.audit_why(by, "admin", "user.disable", &subject, "failed", e.code())
                .await?;
            return Err(e.into());
        }
        match self.users.disable(user_id, self.clock.now_us()).await {
            Ok(()) => {}
            Err(opptak_store::StoreError::NotFound(_)) => {
                let e = AdminError::NotActive(user_id.into());
                self.audit_why(by, "admin", "user.disable", &subject, "failed", e.code())
                    .await?;
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        }
        self.audit(by, "admin", "user.disable", &subject, "allowed").await
    }

    /// Enables a disabled user again (the undo of [`Identity::disable`]).
    /// A user whose role reads content then waits for a second admin's
    /// approval, as a new one does: re-enabling grants content again.
    pub async fn enable(&self, by: &str, user_id: &str) -> Result<()> {
        let subject = format!("user:{user_id}");
        let row = self
            .users
            .get(user_id)
            .await?
            .ok_or_else(|| AdminError::NoSuchUser(user_id.into()))?;
        let needs = Role::parse(&row.role).map_or(true, Role::reads_content);
        match self.users.enable(user_id, by, needs).await {
            Ok(()) => {}
            Err(opptak_store::StoreError::NotFound(_)) => {
                let e = AdminError::NotDisabled(user_id.into());
                self.audit_why(by, "admin", "user.enable", &subject, "failed", e.code())
                    .await?;
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        }
        let why = if needs {
            "awaiting a second admin's approval"
        } else {
            ""
        };
        self.audit_why(by, "admin", "user.enable", &subject, "allowed", why)
            .await
    }

    /// Changes a user's role and team (a known team, or none). If the new
    /// role reads content, the change waits for a second admin's approval,
    /// as adding such a user does (it may grant content, or another team's
    /// calls); the user's sessions end either way. An admin cannot change
    /// their own role.
    pub async fn change(&self, by: &str, user_id: &str, role: Role, team: &str) -> Result<()> {
        let subject = format!("user:{user_id}");
        let row = self
            .users
            .get(user_id)
            .await?
            .ok_or_else(|| AdminError::NoSuchUser(user_id.into()))?;
        let failed = if by == user_id && row.role != role.as_str() {
            Some(AdminError::Yourself)
        } else if !team.is_empty() && !self.teams().await?.iter().any(|t| t == team) {
            Some(AdminError::UnknownTeam(team.into()))
        } else if role != Role::Advisor && self.users.advises_calls(user_id).await? {
            Some(AdminError::AdvisorsId(user_id.into()))
        } else {
            None
        };
        if let Some(e) = failed {
            self.audit_why(by, "admin", "user.change", &subject, "failed", e.code())
                .await?;
            return Err(e.into());
        }
        let needs = role.reads_content();
        self.users.change(user_id, role.as_str(), team, by, needs).await?;
        let mut why = format!("role {} -> {}; team {} -> {team}", row.role, role.as_str(), row.team);
        if needs {
            why.push_str("; ");
            why.push_str(AWAITING);
        }
        self.audit_why(by, "admin", "user.change", &subject, "allowed", &why)
            .await
    }

    /// The known teams, by name.
    pub async fn teams(&self) -> Result<Vec<String>> {
        Ok(self.users.teams().await?.into_iter().map(|t| t.team).collect())
    }

    /// Adds a team users can then be put in (audited `team.create`).
    pub async fn add_team(&self, by: &str, team: &str) -> Result<()> {
        let subject = format!("team:{team}");
        if !valid_team(team) || team.trim() != team {
            let e = AdminError::InvalidTeam(team.into());
            self.audit_why(by, "admin", "team.create", &subject, "failed", e.code())
                .await?;
            return Err(e.into());
        }
        let row = opptak_store::users::TeamRow {
            team: team.into(),
            created_at_us: self.clock.now_us(),
            created_by: by.into(),
        };
        match self.users.add_team(&row).await {
            Ok(()) => self.audit(by, "admin", "team.create", &subject, "allowed").await,
            Err(opptak_store::StoreError::Conflict(_)) => {
                let e = AdminError::TeamExists(team.into());
                self.audit_why(by, "admin", "team.create", &subject, "failed", e.code())
                    .await?;
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Adds `team` if it is new (adding a user with it).
    async fn ensure_team(&self, by: &str, team: &str) -> Result<()> {
        if self.teams().await?.iter().any(|t| t == team) {
            return Ok(());
        }
        match self.add_team(by, team).await {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.downcast_ref(), Some(AdminError::TeamExists(_))) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every user with what the admin page shows of it (no hashes).
    pub async fn listing(&self) -> Result<Vec<UserListing>> {
        self.users
            .list()
            .await?
            .iter()
            .map(|r| {
                Ok(UserListing {
                    user: User::from_row(r)?,
                    active: r.disabled_at_us.is_none(),
                    asked_by: r.pending_by.clone().unwrap_or_else(|| r.created_by.clone()),
                    waiting: waiting(r),
                    created_by: r.created_by.clone(),
                    approved_by: r.approved_by.clone(),
                })
            })
            .collect()
    }

    pub async fn users(&self) -> Result<Vec<(User, bool)>> {
        self.users
            .list()
            .await?
            .iter()
            .map(|r| Ok((User::from_row(r)?, r.disabled_at_us.is_none())))
            .collect()
    }

    /// Checks a password; on success opens a session and returns its token
    /// (give it to the browser; only its hash is stored). Every attempt is
    /// audited; a failure does not say whether the user exists.
    pub async fn login(&self, user_id: &str, password: &str) -> Result<Option<(User, String)>> {
        let row = self.users.get(user_id).await?;
        let ok = verify(row.as_ref().map(|r| r.password_hash.clone()), password).await?;
        let active = row.as_ref().is_some_and(|r| r.disabled_at_us.is_none());
        let subject = format!("user:{user_id}");
        if ok && active && row.as_ref().is_some_and(waiting) {
            self.audit_why(
                user_id,
                "-",
                "login",
                &subject,
                "refused",
                "awaiting a second admin's approval",
            )
            .await?;
            return Ok(None);
        }
        let Some(row) = row.filter(|_| ok && active) else {
            self.audit(user_id, "-", "login", &subject, "refused").await?;
            return Ok(None);
        };
        let user = User::from_row(&row)?;
        let mut raw = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let token = hex::encode(raw);
        let now = self.clock.now_us();
        self.users
            .add_session(&token_hash(&token), user_id, now, now + SESSION_HOURS * 3_600_000_000)
            .await?;
        self.audit(user_id, user.role.as_str(), "login", &subject, "allowed")
            .await?;
        Ok(Some((user, token)))
    }

    /// The user of a session token, if it is valid now.
    pub async fn session(&self, token: &str) -> Result<Option<User>> {
        self.users
            .session_user(&token_hash(token), self.clock.now_us())
            .await?
            .filter(|r| !waiting(r))
            .as_ref()
            .map(User::from_row)
            .transpose()
    }

    pub async fn logout(&self, token: &str) -> Result<()> {
        Ok(self.users.end_session(&token_hash(token)).await?)
    }
}

/// Whether the user waits for a second admin's approval: its role reads
/// content and no one approved it yet.
fn waiting(r: &UserRow) -> bool {
    Role::parse(&r.role).map_or(true, Role::reads_content) && r.approved_by.is_none()
}

/// Checks `password` against a stored Argon2id hash, or against a dummy hash
/// when the user is unknown, so both failures take the same time.
async fn verify(stored: Option<String>, password: &str) -> Result<bool> {
    static DUMMY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        Argon2::default()
            .hash_password(b"no such user", &SaltString::generate(&mut OsRng))
            .map(|h| h.to_string())
            .unwrap_or_default()
    });
    let password = password.to_owned();
    on_hasher(move || {
        PasswordHash::new(stored.as_deref().unwrap_or(DUMMY.as_str()))
            .map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
            .unwrap_or(false)
    })
    .await
}

/// Argon2id is ~50 ms of CPU by design: it runs on tokio's blocking pool, at
/// most one per core at a time, so a burst of sign-ins queues here instead of
/// stalling the async workers that serve every other request.
async fn on_hasher<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    static HASHERS: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    });
    let _permit = HASHERS.acquire().await.context("the password hasher is closed")?;
    tokio::task::spawn_blocking(work)
        .await
        .context("password hashing failed")
}

async fn hash_password(password: &str) -> Result<String> {
    let password = password.to_owned();
    on_hasher(move || {
        Argon2::default()
            .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))
    })
    .await?
}

fn check_password(p: &str) -> Result<()> {
    if p.chars().count() < MIN_PASSWORD {
        bail!("passwords need at least {MIN_PASSWORD} characters");
    }
    Ok(())
}
