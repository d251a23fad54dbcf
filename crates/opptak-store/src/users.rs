//! Local users and web sessions of the embedded mode (issue 6): rows only;
//! hashing and policy live in `src/identity.rs`.

use crate::meta::{db, SqlStore};
use crate::StoreError;

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct UserRow {
    pub user_id: String,
    pub display_name: String,
    pub role: String,
    pub team: String,
    /// Argon2id PHC string; never printed.
    pub password_hash: String,
    pub created_at_us: i64,
    pub disabled_at_us: Option<i64>,
    /// The admin who created it (`cli:<name>` from the command line).
    pub created_by: String,
    /// The second admin who approved it; `None` while it waits.
    pub approved_by: Option<String>,
    pub approved_at_us: Option<i64>,
    /// The admin whose later change (role, team, re-enabling) waits for a
    /// second admin's approval; `None`: the creator's, if anyone's.
    pub pending_by: Option<String>,
}

/// A team users can be put in (migration 0021).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct TeamRow {
    pub team: String,
    pub created_at_us: i64,
    pub created_by: String,
}

pub struct SqlUsers {
    store: SqlStore,
}

const USER_COLUMNS: &str = "u.user_id, u.display_name, u.role, u.team, u.password_hash, u.created_at_us, \
     u.disabled_at_us, u.created_by, u.approved_by, u.approved_at_us, u.pending_by";

impl SqlUsers {
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Ok(Self {
            store: SqlStore::open(url).await?,
        })
    }

    /// Adds a user; `Conflict` if the id is taken.
    pub async fn add(&self, u: &UserRow) -> Result<(), StoreError> {
        let r = sqlx::query(
            "INSERT INTO users (user_id, display_name, role, team, password_hash, created_at_us, created_by, \
             approved_by, approved_at_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(u.user_id.as_str())
        .bind(u.display_name.as_str())
        .bind(u.role.as_str())
        .bind(u.team.as_str())
        .bind(u.password_hash.as_str())
        .bind(u.created_at_us)
        .bind(u.created_by.as_str())
        .bind(u.approved_by.clone())
        .bind(u.approved_at_us)
        .execute(&self.store.pool())
        .await
        .map_err(db)?;
        if r.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("user {} exists", u.user_id)));
        }
        Ok(())
    }

    pub async fn get(&self, user_id: &str) -> Result<Option<UserRow>, StoreError> {
        sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users u WHERE u.user_id = $1"))
            .bind(user_id)
            .fetch_optional(&self.store.pool())
            .await
            .map_err(db)
    }

    pub async fn list(&self) -> Result<Vec<UserRow>, StoreError> {
        sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users u ORDER BY u.user_id"))
            .fetch_all(&self.store.pool())
            .await
            .map_err(db)
    }

    /// Sets a new password hash and ends every session of the user (a
    /// password changed because it leaked must not leave a session open).
    pub async fn set_password(&self, user_id: &str, hash: &str) -> Result<(), StoreError> {
        let mut tx = self.store.begin().await?;
        let r = sqlx::query("UPDATE users SET password_hash = $1 WHERE user_id = $2")
            .bind(hash)
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("user {user_id}")));
        }
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    /// Records the second admin's approval of a waiting user; `NotFound` if
    /// there is no such user or it was approved already.
    pub async fn approve(&self, user_id: &str, by: &str, at_us: i64) -> Result<(), StoreError> {
        let r = sqlx::query(
            "UPDATE users SET approved_by = $1, approved_at_us = $2, pending_by = NULL \
             WHERE user_id = $3 AND approved_by IS NULL AND COALESCE(pending_by, created_by) <> $1",
        )
        .bind(by)
        .bind(at_us)
        .bind(user_id)
        .execute(&self.store.pool())
        .await
        .map_err(db)?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "user {user_id} waiting for the approval of another admin than the one who asked"
            )));
        }
        Ok(())
    }

    /// Whether `id` is the advisor of any recorded call.
    pub async fn advises_calls(&self, id: &str) -> Result<bool, StoreError> {
        let n: Option<(String,)> = sqlx::query_as("SELECT call_id FROM calls WHERE advisor_id = $1 LIMIT 1")
            .bind(id)
            .fetch_optional(&self.store.pool())
            .await
            .map_err(db)?;
        Ok(n.is_some())
    }

    /// Disables a user and ends every session of theirs.
    pub async fn disable(&self, user_id: &str, at_us: i64) -> Result<(), StoreError> {
        let mut tx = self.store.begin().await?;
        let r = sqlx::query("UPDATE users SET disabled_at_us = $1 WHERE user_id = $2 AND disabled_at_us IS NULL")
            .bind(at_us)
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("active user {user_id}")));
        }
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    /// Enables a disabled user again. `needs_approval`: the user's role
    /// reads content, so access waits for a second admin (`by` asked).
    pub async fn enable(&self, user_id: &str, by: &str, needs_approval: bool) -> Result<(), StoreError> {
        let r = sqlx::query(
            "UPDATE users SET disabled_at_us = NULL, \
             approved_by = CASE WHEN $1 = 1 THEN NULL ELSE approved_by END, \
             approved_at_us = CASE WHEN $1 = 1 THEN NULL ELSE approved_at_us END, \
             pending_by = CASE WHEN $1 = 1 THEN $2 ELSE pending_by END \
             WHERE user_id = $3 AND disabled_at_us IS NOT NULL",
        )
        .bind(i64::from(needs_approval))
        .bind(by)
        .bind(user_id)
        .execute(&self.store.pool())
        .await
        .map_err(db)?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("disabled user {user_id}")));
        }
        Ok(())
    }

    /// Sets a user's role and team; `needs_approval` as for [`Self::enable`].
    /// Ends the user's sessions (a session must not keep the old role).
    pub async fn change(
        &self,
        user_id: &str,
        role: &str,
        team: &str,
        by: &str,
        needs_approval: bool,
    ) -> Result<(), StoreError> {
        let mut tx = self.store.begin().await?;
        let r = sqlx::query(
            "UPDATE users SET role = $1, team = $2, \
             approved_by = CASE WHEN $3 = 1 THEN NULL ELSE approved_by END, \
             approved_at_us = CASE WHEN $3 = 1 THEN NULL ELSE approved_at_us END, \
             pending_by = CASE WHEN $3 = 1 THEN $4 ELSE pending_by END \
             WHERE user_id = $5",
        )
        .bind(role)
        .bind(team)
        .bind(i64::from(needs_approval))
        .bind(by)
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("user {user_id}")));
        }
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    /// Every known team, by name.
    pub async fn teams(&self) -> Result<Vec<TeamRow>, StoreError> {
        sqlx::query_as("SELECT team, created_at_us, created_by FROM teams ORDER BY team")
            .fetch_all(&self.store.pool())
            .await
            .map_err(db)
    }

    /// Adds a team; `Conflict` if it exists.
    pub async fn add_team(&self, t: &TeamRow) -> Result<(), StoreError> {
        let r = sqlx::query(
            "INSERT INTO teams (team, created_at_us, created_by) VALUES ($1, $2, $3) ON CONFLICT (team) DO NOTHING",
        )
        .bind(t.team.as_str())
        .bind(t.created_at_us)
        .bind(t.created_by.as_str())
        .execute(&self.store.pool())
        .await
        .map_err(db)?;
        if r.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("team {} exists", t.team)));
        }
        Ok(())
    }

    pub async fn add_session(
        &self,
        token_sha256: &str,
        user_id: &str,
        at_us: i64,
        expires_at_us: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (token_sha256, user_id, created_at_us, expires_at_us) VALUES ($1, $2, $3, $4)",
        )
        .bind(token_sha256)
        .bind(user_id)
        .bind(at_us)
        .bind(expires_at_us)
        .execute(&self.store.pool())
        .await
        .map_err(db)?;
        Ok(())
    }

    /// The session's user, if the session exists, has not expired at
    /// `now_us`, and its user is not disabled.
    pub async fn session_user(&self, token_sha256: &str, now_us: i64) -> Result<Option<UserRow>, StoreError> {
        sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM sessions s JOIN users u ON u.user_id = s.user_id \
             WHERE s.token_sha256 = $1 AND s.expires_at_us > $2 AND u.disabled_at_us IS NULL"
        ))
        .bind(token_sha256)
        .bind(now_us)
        .fetch_optional(&self.store.pool())
        .await
        .map_err(db)
    }

    pub async fn end_session(&self, token_sha256: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE token_sha256 = $1")
            .bind(token_sha256)
            .execute(&self.store.pool())
            .await
            .map_err(db)?;
        Ok(())
    }
}
