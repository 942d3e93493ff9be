//! Whether an account may use the API now: disabled and deleted accounts, the token version
//! that revokes every token issued before a password change, a reset or a disabling, and the
//! web console's sessions, which a logout ends one at a time.
//!
//! A trait of its own (like [`Devices`](crate::Devices)) so that the per-request check the API
//! makes is one small query, written once for both backends by [`impl_accounts`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use trygg_core::TenantId;
use uuid::Uuid;

use crate::StoreError;

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

/// Expands to `impl Accounts for $store` (backend `$db`), with the invoking module's `db_id`,
/// `db_time`, `get_uuid` and `get_opt_uuid`, like [`impl_devices`](crate::devices).
macro_rules! impl_accounts {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::accounts::Accounts for $store {
            async fn account_state(
                &self,
                id: uuid::Uuid,
            ) -> Result<Option<$crate::accounts::AccountState>, $crate::StoreError> {
                let row = sqlx::query(
                    "select tenant_id, disabled_at is null and deleted_at is null, deleted_at is not null, \
                     token_version from users where id = $1",
                )
                .bind(db_id(id))
                .fetch_optional(&self.pool)
                .await?;
                let Some(r) = row else { return Ok(None) };
                Ok(Some($crate::accounts::AccountState {
                    tenant: get_opt_uuid(&r, 0)?.map(trygg_core::TenantId),
                    active: r.get(1),
                    deleted: r.get(2),
                    token_version: r.get(3),
                }))
            }

            async fn account_states(
                &self,
                tenant: Option<trygg_core::TenantId>,
            ) -> Result<Vec<(uuid::Uuid, $crate::accounts::AccountState)>, $crate::StoreError> {
                let rows = sqlx::query(
                    "select id, tenant_id, disabled_at is null and deleted_at is null, deleted_at is not null, \
                     token_version from users where $1 is null or tenant_id = $1",
                )
                .bind(tenant.map(|t| db_id(t.0)))
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok((
                            get_uuid(r, 0)?,
                            $crate::accounts::AccountState {
                                tenant: get_opt_uuid(r, 1)?.map(trygg_core::TenantId),
                                active: r.get(2),
                                deleted: r.get(3),
                                token_version: r.get(4),
                            },
                        ))
                    })
                    .collect()
            }

            async fn set_account_disabled(
                &self,
                tenant: Option<trygg_core::TenantId>,
                id: uuid::Uuid,
                disabled: bool,
                at: chrono::DateTime<chrono::Utc>,
            ) -> Result<bool, $crate::StoreError> {
                let sql = if disabled {
                    "update users set disabled_at = coalesce(disabled_at, $1), token_version = token_version + 1 \
                     where id = $2 and ($3 is null or tenant_id = $3) and deleted_at is null"
                } else {
                    "update users set disabled_at = null \
                     where $1 is not null and id = $2 and ($3 is null or tenant_id = $3) and deleted_at is null"
                };
                let done = sqlx::query(sql)
                    .bind(db_time(at))
                    .bind(db_id(id))
                    .bind(tenant.map(|t| db_id(t.0)))
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete_account(
                &self,
                tenant: Option<trygg_core::TenantId>,
                id: uuid::Uuid,
                at: chrono::DateTime<chrono::Utc>,
            ) -> Result<bool, $crate::StoreError> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "update users set deleted_at = $1, token_version = token_version + 1, \
                     email = 'deleted:' || id, password_hash = '' \
                     where id = $2 and ($3 is null or tenant_id = $3) and deleted_at is null",
                )
                .bind(db_time(at))
                .bind(db_id(id))
                .bind(tenant.map(|t| db_id(t.0)))
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                sqlx::query("delete from team_members where user_id = $1").bind(db_id(id)).execute(&mut *tx).await?;
                sqlx::query("delete from push_tokens where user_id = $1").bind(db_id(id)).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn set_password_hash(
                &self,
                tenant: Option<trygg_core::TenantId>,
                id: uuid::Uuid,
                hash: &str,
            ) -> Result<bool, $crate::StoreError> {
                let done = sqlx::query(
                    "update users set password_hash = $1, token_version = token_version + 1 \
                     where id = $2 and ($3 is null or tenant_id = $3) and deleted_at is null",
                )
                .bind(hash)
                .bind(db_id(id))
                .bind(tenant.map(|t| db_id(t.0)))
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn password_hash(&self, id: uuid::Uuid) -> Result<Option<String>, $crate::StoreError> {
                let row = sqlx::query("select password_hash from users where id = $1 and deleted_at is null")
                    .bind(db_id(id))
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|r| r.get(0)))
            }

            async fn open_session(
                &self,
                id: uuid::Uuid,
                user: uuid::Uuid,
                at: chrono::DateTime<chrono::Utc>,
                expires_at: chrono::DateTime<chrono::Utc>,
            ) -> Result<(), $crate::StoreError> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("delete from sessions where expires_at < $1")
                    .bind(db_time(at))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "insert into sessions (id, user_id, created_at, expires_at) values ($1, $2, $3, $4)",
                )
                .bind(db_id(id))
                .bind(db_id(user))
                .bind(db_time(at))
                .bind(db_time(expires_at))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn session_open(&self, id: uuid::Uuid) -> Result<bool, $crate::StoreError> {
                let row = sqlx::query("select 1 from sessions where id = $1 and ended_at is null")
                    .bind(db_id(id))
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.is_some())
            }

            async fn end_session(
                &self,
                id: uuid::Uuid,
                user: uuid::Uuid,
                at: chrono::DateTime<chrono::Utc>,
            ) -> Result<bool, $crate::StoreError> {
                let done = sqlx::query(
                    "update sessions set ended_at = $1 where id = $2 and user_id = $3 and ended_at is null",
                )
                .bind(db_time(at))
                .bind(db_id(id))
                .bind(db_id(user))
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

pub(crate) use impl_accounts;
