//! Whether an account may use the API now: disabled and deleted accounts, the token version
//! that revokes every token issued before a password change, a reset or a disabling, and the
//! web console's sessions, which a logout ends one at a time.
//!
//! A trait of its own (like [`Devices`](crate::Devices)) so that the per-request check the API
//! makes is one small query, written once for both backends.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tracing::instrument;
use trygg_core::TenantId;
use uuid::Uuid;

use crate::dialect::{get_opt_uuid, get_uuid, query};
use crate::{SqlStore, StoreError};

/// What the per-request check needs to know about an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountState {
    /// The account's tenant (none for installation admins).
    pub tenant: Option<TenantId>,
    /// Neither disabled nor deleted.
    pub active: bool,
    /// Deleted for good.
    pub deleted: bool,
    /// Tokens issued at another version are refused.
    pub token_version: i64,
}

/// Account state changes and the per-request check.
#[async_trait]
pub trait Accounts: Send + Sync {
    /// The state of one account; `None` if there is no such account.
    async fn account_state(&self, id: Uuid) -> Result<Option<AccountState>, StoreError>;
    /// The state of every account of a tenant (`None`: of every account).
    async fn account_states(&self, tenant: Option<TenantId>)
    -> Result<Vec<(Uuid, AccountState)>, StoreError>;
    /// Disables (`true`) or enables an account of `tenant` (`None`: any account); disabling
    /// revokes its tokens. False if there is no such account that is not deleted.
    async fn set_account_disabled(
        &self,
        tenant: Option<TenantId>,
        id: Uuid,
        disabled: bool,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Deletes an account for good: revokes its tokens, frees its email, removes it from teams
    /// and its push tokens. False if there is no such account that is not deleted.
    async fn delete_account(
        &self,
        tenant: Option<TenantId>,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Replaces an account's password hash and revokes its tokens. False if there is no such
    /// account that is not deleted.
    async fn set_password_hash(
        &self,
        tenant: Option<TenantId>,
        id: Uuid,
        hash: &str,
    ) -> Result<bool, StoreError>;
    /// The password hash of an account that is not deleted.
    async fn password_hash(&self, id: Uuid) -> Result<Option<String>, StoreError>;
    /// Opens a browser session `id` of account `user` at `at`, valid until `expires_at`; sessions
    /// that expired before `at` are deleted on the way (their tokens are refused anyway).
    async fn open_session(
        &self,
        id: Uuid,
        user: Uuid,
        at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Whether session `id` exists and has not ended.
    async fn session_open(&self, id: Uuid) -> Result<bool, StoreError>;
    /// Ends session `id` of account `user` (a logout). False if it was not open.
    async fn end_session(&self, id: Uuid, user: Uuid, at: DateTime<Utc>) -> Result<bool, StoreError>;
}

#[async_trait]
impl Accounts for SqlStore {
    #[instrument(level = "debug", skip_all)]
    async fn account_state(&self, id: Uuid) -> Result<Option<AccountState>, StoreError> {
        let row = query(
            "select tenant_id, disabled_at is null and deleted_at is null, deleted_at is not null, \
                     token_version from users where id = $1",
        )
        .bind(id)
        .fetch_optional(&self.db)
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(AccountState {
            tenant: get_opt_uuid(&r, 0)?.map(TenantId),
            active: r.get(1),
            deleted: r.get(2),
            token_version: r.get(3),
        }))
    }

    #[instrument(level = "debug", skip_all)]
    async fn account_states(
        &self,
        tenant: Option<TenantId>,
    ) -> Result<Vec<(Uuid, AccountState)>, StoreError> {
        let rows = query(
            "select id, tenant_id, disabled_at is null and deleted_at is null, deleted_at is not null, \
                     token_version from users where $1 is null or tenant_id = $1",
        )
        .bind(tenant.map(|t| t.0))
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    get_uuid(r, 0)?,
                    AccountState {
                        tenant: get_opt_uuid(r, 1)?.map(TenantId),
                        active: r.get(2),
                        deleted: r.get(3),
                        token_version: r.get(4),
                    },
                ))
            })
            .collect()
    }

    #[instrument(level = "debug", skip_all)]
    async fn set_account_disabled(
        &self,
        tenant: Option<TenantId>,
        id: Uuid,
        disabled: bool,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let sql = if disabled {
            "update users set disabled_at = coalesce(disabled_at, $1), token_version = token_version + 1 \
                     where id = $2 and ($3 is null or tenant_id = $3) and deleted_at is null"
        } else {
            "update users set disabled_at = null \
                     where $1 is not null and id = $2 and ($3 is null or tenant_id = $3) and deleted_at is null"
        };
        let done = query(sql).bind(at).bind(id).bind(tenant.map(|t| t.0)).execute(&self.db).await?;
        Ok(done.rows_affected() == 1)
    }

    #[instrument(level = "debug", skip_all)]
    async fn delete_account(
        &self,
        tenant: Option<TenantId>,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let done = query(
            "update users set deleted_at = $1, token_version = token_version + 1, \
                     email = 'deleted:' || id, password_hash = '' \
                     where id = $2 and ($3 is null or tenant_id = $3) and deleted_at is null",
        )
        .bind(at)
        .bind(id)
        .bind(tenant.map(|t| t.0))
        .execute(&mut tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        query("delete from team_members where user_id = $1").bind(id).execute(&mut tx).await?;
        query("delete from push_tokens where user_id = $1").bind(id).execute(&mut tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    #[instrument(level = "debug", skip_all)]
    async fn set_password_hash(
        &self,
        tenant: Option<TenantId>,
        id: Uuid,
        hash: &str,
    ) -> Result<bool, StoreError> {
        let done = query(
            "update users set password_hash = $1, token_version = token_version + 1 \
                     where id = $2 and ($3 is null or tenant_id = $3) and deleted_at is null",
        )
        .bind(hash)
        .bind(id)
        .bind(tenant.map(|t| t.0))
        .execute(&self.db)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    #[instrument(level = "debug", skip_all)]
    async fn password_hash(&self, id: Uuid) -> Result<Option<String>, StoreError> {
        let row = query("select password_hash from users where id = $1 and deleted_at is null")
            .bind(id)
            .fetch_optional(&self.db)
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    #[instrument(level = "debug", skip_all)]
    async fn open_session(
        &self,
        id: Uuid,
        user: Uuid,
        at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        query("delete from sessions where expires_at < $1").bind(at).execute(&mut tx).await?;
        query("insert into sessions (id, user_id, created_at, expires_at) values ($1, $2, $3, $4)")
            .bind(id)
            .bind(user)
            .bind(at)
            .bind(expires_at)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    #[instrument(level = "debug", skip_all)]
    async fn session_open(&self, id: Uuid) -> Result<bool, StoreError> {
        let row = query("select 1 from sessions where id = $1 and ended_at is null")
            .bind(id)
            .fetch_optional(&self.db)
            .await?;
        Ok(row.is_some())
    }

    #[instrument(level = "debug", skip_all)]
    async fn end_session(&self, id: Uuid, user: Uuid, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let done =
            query("update sessions set ended_at = $1 where id = $2 and user_id = $3 and ended_at is null")
                .bind(at)
                .bind(id)
                .bind(user)
                .execute(&self.db)
                .await?;
        Ok(done.rows_affected() == 1)
    }
}
