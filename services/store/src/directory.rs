//! The caseworker side of the store: accounts, wearers, consent, device bindings, zones, teams,
//! responders, tenant settings and the access log.
//!
//! Every method that reads or writes tenant data takes the caller's tenant and filters by it, so
//! another tenant's id is indistinguishable from a missing one. The queries are written once, in
//! [`impl_directory!`], and expanded in each backend module next to that backend's small value
//! conversions (`db_id`, `db_time`, `get_uuid`, …): the 0002 migration names its columns alike on
//! both backends, and `$n` placeholders (in order) mean the same to SQLite and PostgreSQL.

use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use trygg_core::{DeviceId, TenantId, WearerId};
use uuid::Uuid;

use crate::{Protocol, StoreError};

/// What an account may do. The API decides what each role may call; the store only keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Operates the installation and manages tenants; sees no tenant's personal data.
    Admin,
    /// Manages a tenant's users, teams and settings, and reads its access log.
    TenantAdmin,
    /// Handläggare: wearers, consent, devices, zones and responders.
    Caseworker,
    /// Personal: responds to alarms.
    Staff,
}

impl Role {
    /// Every role, in a stable order.
    pub const ALL: [Self; 4] = [Self::Admin, Self::TenantAdmin, Self::Caseworker, Self::Staff];

    /// The name stored and used in tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::TenantAdmin => "tenant_admin",
            Self::Caseworker => "caseworker",
            Self::Staff => "staff",
        }
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?}; expected admin, tenant_admin, caseworker or staff"))
    }
}

/// Who gave a consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentGiver {
    /// The wearer.
    Wearer,
    /// A legal representative (god man, förvaltare).
    LegalRepresentative,
    /// A documented decision, for a wearer who cannot consent.
    Decision,
}

impl ConsentGiver {
    /// Every value, in a stable order.
    pub const ALL: [Self; 3] = [Self::Wearer, Self::LegalRepresentative, Self::Decision];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wearer => "wearer",
            Self::LegalRepresentative => "legal_representative",
            Self::Decision => "decision",
        }
    }
}

impl FromStr for ConsentGiver {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|g| g.as_str() == s).ok_or_else(|| {
            format!("unknown consent giver {s:?}; expected wearer, legal_representative or decision")
        })
    }
}

/// A tenant (kommun).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Its id.
    pub id: TenantId,
    /// Its unique name.
    pub name: String,
}

/// An account to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Its tenant; `None` exactly for [`Role::Admin`].
    pub tenant: Option<TenantId>,
    /// Login name, unique in the installation.
    pub email: String,
    /// Display name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// argon2 PHC string.
    pub password_hash: String,
}

/// A stored account.
#[derive(Debug, Clone)]
pub struct User {
    /// Its id (the token's subject).
    pub id: Uuid,
    /// The account as created.
    pub user: NewUser,
}

/// A wearer's editable fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WearerFields {
    /// Name.
    pub name: String,
    /// Free text for responders: door code, walking habits.
    pub note: String,
    /// Contact person's name.
    pub contact_name: String,
    /// Contact person's phone number.
    pub contact_phone: String,
    /// The team that responds for this wearer.
    pub team: Option<Uuid>,
}

/// A stored wearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wearer {
    /// Its id.
    pub id: WearerId,
    /// Its fields.
    pub fields: WearerFields,
    /// When it was deactivated, if it was.
    pub deactivated_at: Option<DateTime<Utc>>,
}

/// A consent record to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConsent {
    /// The wearer it concerns.
    pub wearer: WearerId,
    /// It covers positioning.
    pub positioning: bool,
    /// It covers passive (zone) alarms.
    pub passive_alarms: bool,
    /// Who gave it.
    pub given_by: ConsentGiver,
    /// Reference to the signed document or decision.
    pub document_ref: String,
    /// Valid from.
    pub valid_from: DateTime<Utc>,
    /// Valid until (excluded), if limited.
    pub valid_until: Option<DateTime<Utc>>,
    /// The account that recorded it.
    pub recorded_by: Uuid,
}

/// A stored consent record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    /// Its id.
    pub id: Uuid,
    /// The record.
    pub consent: NewConsent,
    /// When it was withdrawn, if it was.
    pub withdrawn_at: Option<DateTime<Utc>>,
}

impl Consent {
    /// Whether it is in force at `at`: started, not expired, not withdrawn.
    pub fn in_force_at(&self, at: DateTime<Utc>) -> bool {
        let c = &self.consent;
        c.valid_from <= at
            && c.valid_until.is_none_or(|until| at < until)
            && self.withdrawn_at.is_none_or(|w| at < w)
    }
}

/// A device as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Its id.
    pub id: DeviceId,
    /// Its protocol.
    pub protocol: Protocol,
    /// The wearer it is bound to now.
    pub wearer: Option<WearerId>,
}

/// One period in which a device was bound to a wearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The device.
    pub device: DeviceId,
    /// From.
    pub bound_at: DateTime<Utc>,
    /// Until, if it ended.
    pub unbound_at: Option<DateTime<Utc>>,
}

/// A zone's stored fields; the API validates the geometry before it gets here.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneFields {
    /// Name.
    pub name: String,
    /// `stay_inside` or `keep_out`.
    pub kind: String,
    /// A GeoJSON geometry object as JSON text.
    pub geometry: String,
    /// Radius for a Point geometry (a circle).
    pub radius_m: Option<f64>,
    /// Weekly schedule as JSON text; `None` is always active.
    pub schedule: Option<String>,
}

/// A stored zone.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredZone {
    /// Its id.
    pub id: Uuid,
    /// The wearer it belongs to.
    pub wearer: WearerId,
    /// Its fields.
    pub fields: ZoneFields,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A team of staff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    /// Its id.
    pub id: Uuid,
    /// Its name, unique in the tenant.
    pub name: String,
    /// Member accounts.
    pub members: Vec<Uuid>,
}

/// Who one responder step alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponderTarget {
    /// One staff account.
    User(Uuid),
    /// Every member of a team.
    Team(Uuid),
}

/// One step of a wearer's responder order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Responder {
    /// Who is alerted.
    pub target: ResponderTarget,
    /// How long an unacknowledged alarm waits here before the next step.
    pub escalate_after_secs: u32,
}

/// A wearer's ordered responders and the last resort after them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResponderPlan {
    /// The steps, in order.
    pub steps: Vec<Responder>,
    /// An external alarm receiving centre's webhook, alerted after the last step.
    pub alarm_centre_url: Option<String>,
}

/// A tenant's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSettings {
    /// IANA time zone of schedules and reports.
    pub time_zone: String,
    /// The exit policy (`trygg_geofence::Policy`) as JSON text.
    pub exit_policy: String,
    /// A device silent this long is offline.
    pub offline_after_secs: u32,
    /// Battery level, in percent, at which a low-battery alert is raised.
    pub battery_low_pct: u8,
    /// Fixes older than this are purged (unless attached to an alarm).
    pub fix_retention_days: u32,
    /// An alarm not on site within this many seconds of being raised is flagged.
    pub on_site_limit_secs: u32,
    /// A repeat joins an acknowledged alarm only this long after it was last triggered.
    pub repeat_join_secs: u32,
    /// The team alerted for alarms nobody else would get: a watch bound to nobody, a wearer with
    /// no responders and no team.
    pub fallback_team: Option<Uuid>,
    /// The alarm centre alerted after the fallback team, and for wearers without one of their own.
    pub fallback_alarm_centre_url: Option<String>,
    /// Device supervision: battery hysteresis and quiet hours.
    pub supervision: SupervisionSettings,
}

/// A tenant's device-supervision settings (migration 0007).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupervisionSettings {
    /// A low-battery alert is re-armed only when the device reports charging or a level this
    /// many points above `battery_low_pct`.
    pub battery_rearm_margin_pct: u8,
    /// Quiet hours start at this hour (0–23, the tenant's time zone): technical alerts that can
    /// wait are held until `quiet_until_hour`.
    pub quiet_from_hour: u8,
    /// Quiet hours end at this hour (0–23). Equal to `quiet_from_hour`: no quiet hours.
    pub quiet_until_hour: u8,
    /// The daily test-alarm window starts at this hour (0–23, the tenant's time zone); a bound
    /// device must send a test alarm before `test_alarm_until_hour` every day (migration 0009).
    pub test_alarm_from_hour: u8,
    /// The daily test-alarm window ends at this hour (0–23). Equal to `test_alarm_from_hour`
    /// (the default): no daily test alarm.
    pub test_alarm_until_hour: u8,
    /// The interval watches are told to report at normally, in seconds (migration 0009).
    pub report_interval_secs: u32,
    /// The interval while a zone exit is suspected but not yet confirmed, in seconds.
    pub report_interval_fast_secs: u32,
}

impl Default for SupervisionSettings {
    fn default() -> Self {
        Self {
            battery_rearm_margin_pct: 10,
            quiet_from_hour: 22,
            quiet_until_hour: 7,
            test_alarm_from_hour: 0,
            test_alarm_until_hour: 0,
            report_interval_secs: 300,
            report_interval_fast_secs: 30,
        }
    }
}

/// How long after its last trigger an acknowledged alarm takes repeats, unless the tenant says.
pub const DEFAULT_REPEAT_JOIN_SECS: u32 = 900;
/// How long a device may be silent before it is offline, unless the tenant says.
pub const DEFAULT_OFFLINE_AFTER_SECS: u32 = 15 * 60;

/// One read of a wearer's positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    /// The tenant.
    pub tenant: TenantId,
    /// Who read.
    pub user: Uuid,
    /// Whose positions.
    pub wearer: WearerId,
    /// When.
    pub at: DateTime<Utc>,
    /// What was read, e.g. `positions`.
    pub what: String,
    /// Why, as the reader stated it.
    pub reason: String,
}

/// Accounts and the caseworker's data, every call scoped to a tenant.
#[async_trait]
pub trait Directory: Send + Sync {
    /// Creates an account; the email must be unused ([`StoreError::Conflict`]).
    async fn add_user(&self, user: &NewUser) -> Result<Uuid, StoreError>;
    /// The account with this email, for login.
    async fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError>;
    /// The accounts of a tenant, or every account for `None`.
    async fn users(&self, tenant: Option<TenantId>) -> Result<Vec<User>, StoreError>;

    /// Every tenant, by name.
    async fn tenants(&self) -> Result<Vec<Tenant>, StoreError>;
    /// One tenant.
    async fn tenant(&self, id: TenantId) -> Result<Option<Tenant>, StoreError>;

    /// Creates a wearer.
    async fn add_wearer(&self, tenant: TenantId, fields: &WearerFields) -> Result<WearerId, StoreError>;
    /// The tenant's wearers, by name.
    async fn wearers(&self, tenant: TenantId) -> Result<Vec<Wearer>, StoreError>;
    /// One wearer of the tenant.
    async fn wearer(&self, tenant: TenantId, id: WearerId) -> Result<Option<Wearer>, StoreError>;
    /// Replaces a wearer's fields; false if there is no such wearer in the tenant.
    async fn update_wearer(
        &self,
        tenant: TenantId,
        id: WearerId,
        fields: &WearerFields,
    ) -> Result<bool, StoreError>;
    /// Marks a wearer deactivated (idempotent); false if there is no such wearer in the tenant.
    async fn deactivate_wearer(
        &self,
        tenant: TenantId,
        id: WearerId,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Records a consent.
    async fn add_consent(&self, tenant: TenantId, consent: &NewConsent) -> Result<Uuid, StoreError>;
    /// The consents of one wearer, or of every wearer of the tenant, oldest first.
    async fn consents(&self, tenant: TenantId, wearer: Option<WearerId>) -> Result<Vec<Consent>, StoreError>;
    /// Marks a consent withdrawn (the first withdrawal counts); false if there is no such consent.
    async fn withdraw_consent(
        &self,
        tenant: TenantId,
        wearer: WearerId,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// The tenant's devices, by id.
    async fn devices(&self, tenant: TenantId) -> Result<Vec<DeviceInfo>, StoreError>;
    /// One device of the tenant.
    async fn device(&self, tenant: TenantId, id: &DeviceId) -> Result<Option<DeviceInfo>, StoreError>;
    /// Binds an unbound device to a wearer. [`StoreError::NotFound`] for a device not in the
    /// tenant, [`StoreError::Conflict`] if it is bound already.
    async fn bind_device(
        &self,
        tenant: TenantId,
        device: &DeviceId,
        wearer: WearerId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Ends a device's binding. [`StoreError::Conflict`] if it is not bound.
    async fn unbind_device(
        &self,
        tenant: TenantId,
        device: &DeviceId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Moves the wearer of `old` to the unbound device `new` in one transaction; returns the wearer.
    async fn replace_device(
        &self,
        tenant: TenantId,
        old: &DeviceId,
        new: &DeviceId,
        at: DateTime<Utc>,
    ) -> Result<WearerId, StoreError>;
    /// Every binding a wearer had, oldest first.
    async fn bindings(&self, tenant: TenantId, wearer: WearerId) -> Result<Vec<Binding>, StoreError>;

    /// Stores a zone of a wearer.
    async fn add_zone(
        &self,
        tenant: TenantId,
        wearer: WearerId,
        zone: &ZoneFields,
        at: DateTime<Utc>,
    ) -> Result<Uuid, StoreError>;
    /// The zones of one wearer, or of every wearer of the tenant, oldest first.
    async fn zones(&self, tenant: TenantId, wearer: Option<WearerId>) -> Result<Vec<StoredZone>, StoreError>;
    /// Replaces a zone's fields; false if there is no such zone.
    async fn update_zone(
        &self,
        tenant: TenantId,
        wearer: WearerId,
        id: Uuid,
        zone: &ZoneFields,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Deletes a zone; false if there is no such zone.
    async fn delete_zone(&self, tenant: TenantId, wearer: WearerId, id: Uuid) -> Result<bool, StoreError>;

    /// Creates a team; its name must be unused in the tenant.
    async fn add_team(&self, tenant: TenantId, name: &str) -> Result<Uuid, StoreError>;
    /// The tenant's teams with their members, by name.
    async fn teams(&self, tenant: TenantId) -> Result<Vec<Team>, StoreError>;
    /// Replaces a team's members; false if there is no such team. The caller checks that the
    /// members belong to the tenant.
    async fn set_team_members(
        &self,
        tenant: TenantId,
        team: Uuid,
        members: &[Uuid],
    ) -> Result<bool, StoreError>;

    /// Replaces a wearer's responder order; false if there is no such wearer.
    async fn set_responders(
        &self,
        tenant: TenantId,
        wearer: WearerId,
        plan: &ResponderPlan,
    ) -> Result<bool, StoreError>;
    /// A wearer's responder order (empty if none was set).
    async fn responders(&self, tenant: TenantId, wearer: WearerId) -> Result<ResponderPlan, StoreError>;

    /// The tenant's settings, if any were saved.
    async fn settings(&self, tenant: TenantId) -> Result<Option<TenantSettings>, StoreError>;

    /// The staff an alarm's escalation step `step` alerts: step `step` of the wearer's responder
    /// order (a user, or every member of a team); without an order, step 0 is the wearer's team.
    /// Nobody-to-alert is an alarm too: for a device bound to nobody (`wearer` `None`), or a
    /// wearer with neither responders nor a team, step 0 is the tenant's fallback team. `None`
    /// when there is no such step (the alarm centre is next).
    async fn alarm_recipients(
        &self,
        tenant: TenantId,
        wearer: Option<WearerId>,
        step: usize,
    ) -> Result<Option<Vec<Uuid>>, StoreError> {
        let plan = match wearer {
            Some(w) => self.responders(tenant, w).await?,
            None => ResponderPlan::default(),
        };
        let target = match plan.steps.get(step) {
            Some(s) => s.target,
            None if plan.steps.is_empty() && step == 0 => {
                let team = match wearer {
                    Some(w) => self.wearer(tenant, w).await?.and_then(|w| w.fields.team),
                    None => None,
                };
                let team = match team {
                    Some(t) => Some(t),
                    None => self.settings(tenant).await?.and_then(|s| s.fallback_team),
                };
                match team {
                    Some(t) => ResponderTarget::Team(t),
                    None => return Ok(None),
                }
            }
            None => return Ok(None),
        };
        Ok(Some(match target {
            ResponderTarget::User(u) => vec![u],
            ResponderTarget::Team(t) => self
                .teams(tenant)
                .await?
                .into_iter()
                .find(|team| team.id == t)
                .map(|t| t.members)
                .unwrap_or_default(),
        }))
    }

    /// The alarm centre an alarm escalates to after its last step: the wearer's own, else the
    /// tenant's fallback.
    async fn alarm_centre_url(
        &self,
        tenant: TenantId,
        wearer: Option<WearerId>,
    ) -> Result<Option<String>, StoreError> {
        let own = match wearer {
            Some(w) => self.responders(tenant, w).await?.alarm_centre_url,
            None => None,
        };
        match own {
            Some(url) => Ok(Some(url)),
            None => Ok(self.settings(tenant).await?.and_then(|s| s.fallback_alarm_centre_url)),
        }
    }
    /// Saves the tenant's settings.
    async fn put_settings(
        &self,
        tenant: TenantId,
        settings: &TenantSettings,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Records a read of a wearer's positions.
    async fn log_access(&self, entry: &AccessEntry) -> Result<(), StoreError>;
    /// The tenant's access log, newest first.
    async fn access_log(&self, tenant: TenantId, limit: u32) -> Result<Vec<AccessEntry>, StoreError>;
}

/// Expands to `impl Directory for $store` (backend `$db`). The invoking module provides `db_id`, `db_time`,
/// `db_opt_time`, `get_uuid`, `get_opt_uuid`, `get_time`, `get_opt_time` for its backend;
/// `$wearer_created` is the creation column of `wearers` from migration 0001.
macro_rules! impl_directory {
    ($store:ty, $db:ty, wearer_created = $wearer_created:literal) => {
        #[async_trait::async_trait]
        impl $crate::directory::Directory for $store {
            async fn add_user(&self, u: &$crate::NewUser) -> Result<uuid::Uuid, $crate::StoreError> {
                let id = uuid::Uuid::new_v4();
                sqlx::query(
                    "insert into users (id, tenant_id, email, name, role, password_hash, created_at) \
                     values ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(db_id(id))
                .bind(u.tenant.map(|t| db_id(t.0)))
                .bind(&u.email)
                .bind(&u.name)
                .bind(u.role.as_str())
                .bind(&u.password_hash)
                .bind(db_time(chrono::Utc::now()))
                .execute(&self.pool)
                .await
                .map_err($crate::conflict("user"))?;
                Ok(id)
            }

            async fn user_by_email(&self, email: &str) -> Result<Option<$crate::User>, $crate::StoreError> {
                let row = sqlx::query(
                    "select id, tenant_id, email, name, role, password_hash from users where email = $1",
                )
                .bind(email)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|r| user_row(&r)).transpose()
            }

            async fn users(&self, tenant: Option<trygg_core::TenantId>) -> Result<Vec<$crate::User>, $crate::StoreError> {
                let rows = sqlx::query(
                    "select id, tenant_id, email, name, role, password_hash from users \
                     where $1 is null or tenant_id = $1 order by email",
                )
                .bind(tenant.map(|t| db_id(t.0)))
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(user_row).collect()
            }

            async fn tenants(&self) -> Result<Vec<$crate::Tenant>, $crate::StoreError> {
                let rows = sqlx::query("select id, name from tenants order by name").fetch_all(&self.pool).await?;
                rows.iter()
                    .map(|r| Ok($crate::Tenant { id: trygg_core::TenantId(get_uuid(r, 0)?), name: r.get(1) }))
                    .collect()
            }

            async fn tenant(&self, id: trygg_core::TenantId) -> Result<Option<$crate::Tenant>, $crate::StoreError> {
                let row = sqlx::query("select name from tenants where id = $1")
                    .bind(db_id(id.0))
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|r| $crate::Tenant { id, name: r.get(0) }))
            }

            async fn add_wearer(
                &self,
                tenant: trygg_core::TenantId,
                f: &$crate::WearerFields,
            ) -> Result<trygg_core::WearerId, $crate::StoreError> {
                let id = trygg_core::WearerId::new();
                sqlx::query(concat!(
                    "insert into wearers (id, tenant_id, name, note, contact_name, contact_phone, team_id, ",
                    $wearer_created,
                    ") values ($1, $2, $3, $4, $5, $6, $7, $8)"
                ))
                .bind(db_id(id.0))
                .bind(db_id(tenant.0))
                .bind(&f.name)
                .bind(&f.note)
                .bind(&f.contact_name)
                .bind(&f.contact_phone)
                .bind(f.team.map(db_id))
                .bind(db_time(chrono::Utc::now()))
                .execute(&self.pool)
                .await
                .map_err($crate::conflict("wearer"))?;
                Ok(id)
            }

            async fn wearers(&self, tenant: trygg_core::TenantId) -> Result<Vec<$crate::Wearer>, $crate::StoreError> {
                let rows = sqlx::query(
                    "select id, name, note, contact_name, contact_phone, team_id, deactivated_at from wearers \
                     where tenant_id = $1 order by name, id",
                )
                .bind(db_id(tenant.0))
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(wearer_row).collect()
            }

            async fn wearer(
                &self,
                tenant: trygg_core::TenantId,
                id: trygg_core::WearerId,
            ) -> Result<Option<$crate::Wearer>, $crate::StoreError> {
                let row = sqlx::query(
                    "select id, name, note, contact_name, contact_phone, team_id, deactivated_at from wearers \
                     where tenant_id = $1 and id = $2",
                )
                .bind(db_id(tenant.0))
                .bind(db_id(id.0))
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(wearer_row).transpose()
            }

            async fn update_wearer(
                &self,
                tenant: trygg_core::TenantId,
                id: trygg_core::WearerId,
                f: &$crate::WearerFields,
            ) -> Result<bool, $crate::StoreError> {
                let done = sqlx::query(
                    "update wearers set name = $1, note = $2, contact_name = $3, contact_phone = $4, team_id = $5 \
                     where tenant_id = $6 and id = $7",
                )
                .bind(&f.name)
                .bind(&f.note)
                .bind(&f.contact_name)
                .bind(&f.contact_phone)
                .bind(f.team.map(db_id))
                .bind(db_id(tenant.0))
                .bind(db_id(id.0))
                .execute(&self.pool)
                .await
                .map_err($crate::conflict("wearer"))?;
                Ok(done.rows_affected() == 1)
            }

            async fn deactivate_wearer(
                &self,
                tenant: trygg_core::TenantId,
                id: trygg_core::WearerId,
                at: chrono::DateTime<chrono::Utc>,
            ) -> Result<bool, $crate::StoreError> {
                let done = sqlx::query(
                    "update wearers set deactivated_at = coalesce(deactivated_at, $1) where tenant_id = $2 and id = $3",
                )
                .bind(db_time(at))
                .bind(db_id(tenant.0))
                .bind(db_id(id.0))
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn add_consent(
                &self,
                tenant: trygg_core::TenantId,
                c: &$crate::NewConsent,
            ) -> Result<uuid::Uuid, $crate::StoreError> {
                let id = uuid::Uuid::new_v4();
                sqlx::query(
                    "insert into consents (id, tenant_id, wearer_id, positioning, passive_alarms, given_by, \
                     document_ref, valid_from, valid_until, recorded_by, created_at) \
                     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(db_id(id))
                .bind(db_id(tenant.0))
                .bind(db_id(c.wearer.0))
                .bind(c.positioning)
                .bind(c.passive_alarms)
                .bind(c.given_by.as_str())
                .bind(&c.document_ref)
                .bind(db_time(c.valid_from))
                .bind(c.valid_until.map(db_time))
                .bind(db_id(c.recorded_by))
                .bind(db_time(chrono::Utc::now()))
                .execute(&self.pool)
                .await
                .map_err($crate::conflict("consent"))?;
                Ok(id)
            }

            async fn consents(
                &self,
                tenant: trygg_core::TenantId,
                wearer: Option<trygg_core::WearerId>,
            ) -> Result<Vec<$crate::Consent>, $crate::StoreError> {
                let rows = sqlx::query(
                    "select id, wearer_id, positioning, passive_alarms, given_by, document_ref, valid_from, \
                     valid_until, recorded_by, withdrawn_at from consents \
                     where tenant_id = $1 and ($2 is null or wearer_id = $2) order by created_at, id",
                )
                .bind(db_id(tenant.0))
                .bind(wearer.map(|w| db_id(w.0)))
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok($crate::Consent {
                            id: get_uuid(r, 0)?,
                            consent: $crate::NewConsent {
                                wearer: trygg_core::WearerId(get_uuid(r, 1)?),
                                positioning: r.get(2),
                                passive_alarms: r.get(3),
                                given_by: $crate::parse_text("consent giver", r.get(4))?,
                                document_ref: r.get(5),
                                valid_from: get_time(r, 6)?,
                                valid_until: get_opt_time(r, 7)?,
                                recorded_by: get_uuid(r, 8)?,
                            },
                            withdrawn_at: get_opt_time(r, 9)?,
                        })
                    })
                    .collect()
            }

            async fn withdraw_consent(
                &self,
                tenant: trygg_core::TenantId,
                wearer: trygg_core::WearerId,
                id: uuid::Uuid,
                at: chrono::DateTime<chrono::Utc>,
            ) -> Result<bool, $crate::StoreError> {
                let done = sqlx::query(
                    "update consents set withdrawn_at = coalesce(withdrawn_at, $1) \
                     where tenant_id = $2 and wearer_id = $3 and id = $4",
                )
                .bind(db_time(at))
                .bind(db_id(tenant.0))
                .bind(db_id(wearer.0))
                .bind(db_id(id))
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn devices(&self, tenant: trygg_core::TenantId) -> Result<Vec<$crate::DeviceInfo>, $crate::StoreError> {
                let rows = sqlx::query("select id, protocol, wearer_id from devices where tenant_id = $1 order by id")
                    .bind(db_id(tenant.0))
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(device_row).collect()
            }

            async fn device(
                &self,
                tenant: trygg_core::TenantId,
                id: &trygg_core::DeviceId,
            ) -> Result<Option<$crate::DeviceInfo>, $crate::StoreError> {
                let row = sqlx::query("select id, protocol, wearer_id from devices where tenant_id = $1 and id = $2")
                    .bind(db_id(tenant.0))
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(device_row).transpose()
            }

            async fn bind_device(
                &self,
                tenant: trygg_core::TenantId,
                device: &trygg_core::DeviceId,
                wearer: trygg_core::WearerId,
                at: chrono::DateTime<chrono::Utc>,
            ) -> Result<(), $crate::StoreError> {
                let mut tx = begin_write(&self.pool).await?;
                bind_in(&mut tx, tenant, device, wearer, at).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn unbind_device(
                &self,
                tenant: trygg_core::TenantId,
                device: &trygg_core::DeviceId,
                at: chrono::DateTime<chrono::Utc>,
            ) -> Result<(), $crate::StoreError> {
                let mut tx = begin_write(&self.pool).await?;
                unbind_in(&mut tx, tenant, device, at).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn replace_device(
                &self,
                tenant: trygg_core::TenantId,
                old: &trygg_core::DeviceId,
                new: &trygg_core::DeviceId,
                at: chrono::DateTime<chrono::Utc>,
            ) -> Result<trygg_core::WearerId, $crate::StoreError> {
                let mut tx = begin_write(&self.pool).await?;
                let wearer = unbind_in(&mut tx, tenant, old, at).await?;
                bind_in(&mut tx, tenant, new, wearer, at).await?;
                tx.commit().await?;
                Ok(wearer)
            }

            async fn bindings(
                &self,
                tenant: trygg_core::TenantId,
                wearer: trygg_core::WearerId,
            ) -> Result<Vec<$crate::Binding>, $crate::StoreError> {
                let rows = sqlx::query(
                    "select device_id, bound_at, unbound_at from device_bindings \
                     where tenant_id = $1 and wearer_id = $2 order by bound_at, id",
                )
                .bind(db_id(tenant.0))
                .bind(db_id(wearer.0))
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok($crate::Binding {
                            device: $crate::parse_device(r.get(0))?,
                            bound_at: get_time(r, 1)?,
                            unbound_at: get_opt_time(r, 2)?,
                        })
                    })
                    .collect()
            }

            async fn add_zone(
                &self,
                tenant: trygg_core::TenantId,
                wearer: trygg_core::WearerId,
                z: &$crate::ZoneFields,
                at: chrono::DateTime<chrono::Utc>,
            ) -> Result<uuid::Uuid, $crate::StoreError> {
                let id = uuid::Uuid::new_v4();
                sqlx::query(
                    "insert into zones (id, tenant_id, wearer_id, name, kind, geometry, radius_m, schedule, \
                     created_at, updated_at) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(db_id(id))
                .bind(db_id(tenant.0))
                .bind(db_id(wearer.0))
                .bind(&z.name)
                .bind(&z.kind)
                .bind(&z.geometry)
                .bind(z.radius_m)
                .bind(z.schedule.as_deref())
                .bind(db_time(at))
                .bind(db_time(at))
                .execute(&self.pool)
                .await
                .map_err($crate::conflict("zone"))?;
                Ok(id)
            }

            async fn zones(
                &self,
                tenant: trygg_core::TenantId,
                wearer: Option<trygg_core::WearerId>,
            ) -> Result<Vec<$crate::StoredZone>, $crate::StoreError> {
                let rows = sqlx::query(
                    "select id, wearer_id, name, kind, geometry, radius_m, schedule, updated_at from zones \
                     where tenant_id = $1 and ($2 is null or wearer_id = $2) order by created_at, id",
                )
                .bind(db_id(tenant.0))
                .bind(wearer.map(|w| db_id(w.0)))
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok($crate::StoredZone {
                            id: get_uuid(r, 0)?,
                            wearer: trygg_core::WearerId(get_uuid(r, 1)?),
                            fields: $crate::ZoneFields {
                                name: r.get(2),
                                kind: r.get(3),
                                geometry: r.get(4),
                                radius_m: r.get(5),
                                schedule: r.get(6),
                            },
                            updated_at: get_time(r, 7)?,
                        })
                    })
                    .collect()
            }

            async fn update_zone(
                &self,
                tenant: trygg_core::TenantId,
                wearer: trygg_core::WearerId,
                id: uuid::Uuid,
                z: &$crate::ZoneFields,
                at: chrono::DateTime<chrono::Utc>,
            ) -> Result<bool, $crate::StoreError> {
                let done = sqlx::query(
                    "update zones set name = $1, kind = $2, geometry = $3, radius_m = $4, schedule = $5, \
                     updated_at = $6 where tenant_id = $7 and wearer_id = $8 and id = $9",
                )
                .bind(&z.name)
                .bind(&z.kind)
                .bind(&z.geometry)
                .bind(z.radius_m)
                .bind(z.schedule.as_deref())
                .bind(db_time(at))
                .bind(db_id(tenant.0))
                .bind(db_id(wearer.0))
                .bind(db_id(id))
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete_zone(
                &self,
                tenant: trygg_core::TenantId,
                wearer: trygg_core::WearerId,
                id: uuid::Uuid,
            ) -> Result<bool, $crate::StoreError> {
                let done = sqlx::query("delete from zones where tenant_id = $1 and wearer_id = $2 and id = $3")
                    .bind(db_id(tenant.0))
                    .bind(db_id(wearer.0))
                    .bind(db_id(id))
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn add_team(&self, tenant: trygg_core::TenantId, name: &str) -> Result<uuid::Uuid, $crate::StoreError> {
                let id = uuid::Uuid::new_v4();
                sqlx::query("insert into teams (id, tenant_id, name, created_at) values ($1, $2, $3, $4)")
                    .bind(db_id(id))
                    .bind(db_id(tenant.0))
                    .bind(name)
                    .bind(db_time(chrono::Utc::now()))
                    .execute(&self.pool)
                    .await
                    .map_err($crate::conflict("team"))?;
                Ok(id)
            }

            async fn teams(&self, tenant: trygg_core::TenantId) -> Result<Vec<$crate::Team>, $crate::StoreError> {
                let rows = sqlx::query(
                    "select t.id, t.name, m.user_id from teams t left join team_members m on m.team_id = t.id \
                     where t.tenant_id = $1 order by t.name, t.id, m.user_id",
                )
                .bind(db_id(tenant.0))
                .fetch_all(&self.pool)
                .await?;
                let mut teams: Vec<$crate::Team> = Vec::new();
                for r in &rows {
                    let id = get_uuid(r, 0)?;
                    if teams.last().is_none_or(|t| t.id != id) {
                        teams.push($crate::Team { id, name: r.get(1), members: Vec::new() });
                    }
                    if let (Some(team), Some(member)) = (teams.last_mut(), get_opt_uuid(r, 2)?) {
                        team.members.push(member);
                    }
                }
                Ok(teams)
            }

            async fn set_team_members(
                &self,
                tenant: trygg_core::TenantId,
                team: uuid::Uuid,
                members: &[uuid::Uuid],
            ) -> Result<bool, $crate::StoreError> {
                let mut tx = begin_write(&self.pool).await?;
                let found = sqlx::query("select 1 from teams where tenant_id = $1 and id = $2")
                    .bind(db_id(tenant.0))
                    .bind(db_id(team))
                    .fetch_optional(&mut *tx)
                    .await?;
                if found.is_none() {
                    return Ok(false);
                }
                sqlx::query("delete from team_members where team_id = $1").bind(db_id(team)).execute(&mut *tx).await?;
                for m in members {
                    sqlx::query("insert into team_members (team_id, user_id) values ($1, $2) on conflict do nothing")
                        .bind(db_id(team))
                        .bind(db_id(*m))
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::conflict("team member"))?;
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn set_responders(
                &self,
                tenant: trygg_core::TenantId,
                wearer: trygg_core::WearerId,
                plan: &$crate::ResponderPlan,
            ) -> Result<bool, $crate::StoreError> {
                let mut tx = begin_write(&self.pool).await?;
                let done = sqlx::query("update wearers set alarm_centre_url = $1 where tenant_id = $2 and id = $3")
                    .bind(plan.alarm_centre_url.as_deref())
                    .bind(db_id(tenant.0))
                    .bind(db_id(wearer.0))
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                sqlx::query("delete from responders where wearer_id = $1")
                    .bind(db_id(wearer.0))
                    .execute(&mut *tx)
                    .await?;
                for (position, step) in (0_i64..).zip(&plan.steps) {
                    let (user, team) = match step.target {
                        $crate::ResponderTarget::User(u) => (Some(db_id(u)), None),
                        $crate::ResponderTarget::Team(t) => (None, Some(db_id(t))),
                    };
                    sqlx::query(
                        "insert into responders (wearer_id, position, user_id, team_id, escalate_after_secs) \
                         values ($1, $2, $3, $4, $5)",
                    )
                    .bind(db_id(wearer.0))
                    .bind(position)
                    .bind(user)
                    .bind(team)
                    .bind(i64::from(step.escalate_after_secs))
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::conflict("responder"))?;
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn responders(
                &self,
                tenant: trygg_core::TenantId,
                wearer: trygg_core::WearerId,
            ) -> Result<$crate::ResponderPlan, $crate::StoreError> {
                let url: Option<Option<String>> =
                    sqlx::query_scalar("select alarm_centre_url from wearers where tenant_id = $1 and id = $2")
                        .bind(db_id(tenant.0))
                        .bind(db_id(wearer.0))
                        .fetch_optional(&self.pool)
                        .await?;
                let rows = sqlx::query(
                    "select r.user_id, r.team_id, r.escalate_after_secs from responders r \
                     join wearers w on w.id = r.wearer_id where r.wearer_id = $1 and w.tenant_id = $2 \
                     order by r.position",
                )
                .bind(db_id(wearer.0))
                .bind(db_id(tenant.0))
                .fetch_all(&self.pool)
                .await?;
                let steps = rows
                    .iter()
                    .map(|r| {
                        let target = match (get_opt_uuid(r, 0)?, get_opt_uuid(r, 1)?) {
                            (Some(u), _) => $crate::ResponderTarget::User(u),
                            (None, Some(t)) => $crate::ResponderTarget::Team(t),
                            (None, None) => {
                                return Err($crate::StoreError::Corrupt { what: "responder", value: String::new() });
                            }
                        };
                        let secs: i64 = r.get(2);
                        Ok($crate::Responder {
                            target,
                            escalate_after_secs: u32::try_from(secs).map_err(|_| $crate::StoreError::Corrupt {
                                what: "escalation delay",
                                value: secs.to_string(),
                            })?,
                        })
                    })
                    .collect::<Result<_, $crate::StoreError>>()?;
                Ok($crate::ResponderPlan { steps, alarm_centre_url: url.flatten() })
            }

            async fn settings(
                &self,
                tenant: trygg_core::TenantId,
            ) -> Result<Option<$crate::TenantSettings>, $crate::StoreError> {
                let row = sqlx::query(
                    "select time_zone, exit_policy, offline_after_secs, battery_low_pct, fix_retention_days, \
                     on_site_limit_secs, repeat_join_secs, fallback_team_id, fallback_alarm_centre_url, \
                     battery_rearm_margin_pct, quiet_from_hour, quiet_until_hour, \
                     test_alarm_from_hour, test_alarm_until_hour, report_interval_secs, report_interval_fast_secs \
                     from tenant_settings where tenant_id = $1",
                )
                .bind(db_id(tenant.0))
                .fetch_optional(&self.pool)
                .await?;
                row.map(|r| {
                    Ok($crate::TenantSettings {
                        time_zone: r.get(0),
                        exit_policy: r.get(1),
                        offline_after_secs: $crate::narrow("offline threshold", r.get(2))?,
                        battery_low_pct: $crate::narrow("battery threshold", r.get(3))?,
                        fix_retention_days: $crate::narrow("retention", r.get(4))?,
                        on_site_limit_secs: $crate::narrow("on-site limit", r.get(5))?,
                        repeat_join_secs: $crate::narrow("repeat join window", r.get(6))?,
                        fallback_team: get_opt_uuid(&r, 7)?,
                        fallback_alarm_centre_url: r.get(8),
                        supervision: $crate::SupervisionSettings {
                            battery_rearm_margin_pct: $crate::narrow("battery re-arm margin", r.get(9))?,
                            quiet_from_hour: $crate::narrow("quiet hours start", r.get(10))?,
                            quiet_until_hour: $crate::narrow("quiet hours end", r.get(11))?,
                            test_alarm_from_hour: $crate::narrow("test alarm window start", r.get(12))?,
                            test_alarm_until_hour: $crate::narrow("test alarm window end", r.get(13))?,
                            report_interval_secs: $crate::narrow("report interval", r.get(14))?,
                            report_interval_fast_secs: $crate::narrow("fast report interval", r.get(15))?,
                        },
                    })
                })
                .transpose()
            }

            async fn put_settings(
                &self,
                tenant: trygg_core::TenantId,
                s: &$crate::TenantSettings,
                at: chrono::DateTime<chrono::Utc>,
            ) -> Result<(), $crate::StoreError> {
                sqlx::query(
                    "insert into tenant_settings (tenant_id, time_zone, exit_policy, offline_after_secs, \
                     battery_low_pct, fix_retention_days, updated_at, on_site_limit_secs, repeat_join_secs, \
                     fallback_team_id, fallback_alarm_centre_url, battery_rearm_margin_pct, quiet_from_hour, \
                     quiet_until_hour, test_alarm_from_hour, test_alarm_until_hour, report_interval_secs, \
                     report_interval_fast_secs) \
                     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
                     on conflict (tenant_id) do update set time_zone = excluded.time_zone, \
                     exit_policy = excluded.exit_policy, offline_after_secs = excluded.offline_after_secs, \
                     battery_low_pct = excluded.battery_low_pct, fix_retention_days = excluded.fix_retention_days, \
                     updated_at = excluded.updated_at, on_site_limit_secs = excluded.on_site_limit_secs, \
                     repeat_join_secs = excluded.repeat_join_secs, fallback_team_id = excluded.fallback_team_id, \
                     fallback_alarm_centre_url = excluded.fallback_alarm_centre_url, \
                     battery_rearm_margin_pct = excluded.battery_rearm_margin_pct, \
                     quiet_from_hour = excluded.quiet_from_hour, quiet_until_hour = excluded.quiet_until_hour, \
                     test_alarm_from_hour = excluded.test_alarm_from_hour, \
                     test_alarm_until_hour = excluded.test_alarm_until_hour, \
                     report_interval_secs = excluded.report_interval_secs, \
                     report_interval_fast_secs = excluded.report_interval_fast_secs",
                )
                .bind(db_id(tenant.0))
                .bind(&s.time_zone)
                .bind(&s.exit_policy)
                .bind(i64::from(s.offline_after_secs))
                .bind(i64::from(s.battery_low_pct))
                .bind(i64::from(s.fix_retention_days))
                .bind(db_time(at))
                .bind(i64::from(s.on_site_limit_secs))
                .bind(i64::from(s.repeat_join_secs))
                .bind(s.fallback_team.map(db_id))
                .bind(s.fallback_alarm_centre_url.as_deref())
                .bind(i64::from(s.supervision.battery_rearm_margin_pct))
                .bind(i64::from(s.supervision.quiet_from_hour))
                .bind(i64::from(s.supervision.quiet_until_hour))
                .bind(i64::from(s.supervision.test_alarm_from_hour))
                .bind(i64::from(s.supervision.test_alarm_until_hour))
                .bind(i64::from(s.supervision.report_interval_secs))
                .bind(i64::from(s.supervision.report_interval_fast_secs))
                .execute(&self.pool)
                .await
                .map_err($crate::conflict("settings"))?;
                Ok(())
            }

            async fn log_access(&self, e: &$crate::AccessEntry) -> Result<(), $crate::StoreError> {
                sqlx::query(
                    "insert into access_log (tenant_id, user_id, wearer_id, at, what, reason) \
                     values ($1, $2, $3, $4, $5, $6)",
                )
                .bind(db_id(e.tenant.0))
                .bind(db_id(e.user))
                .bind(db_id(e.wearer.0))
                .bind(db_time(e.at))
                .bind(&e.what)
                .bind(&e.reason)
                .execute(&self.pool)
                .await
                .map_err($crate::conflict("access log entry"))?;
                Ok(())
            }

            async fn access_log(
                &self,
                tenant: trygg_core::TenantId,
                limit: u32,
            ) -> Result<Vec<$crate::AccessEntry>, $crate::StoreError> {
                let rows = sqlx::query(
                    "select user_id, wearer_id, at, what, reason from access_log where tenant_id = $1 \
                     order by at desc, id desc limit $2",
                )
                .bind(db_id(tenant.0))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok($crate::AccessEntry {
                            tenant,
                            user: get_uuid(r, 0)?,
                            wearer: trygg_core::WearerId(get_uuid(r, 1)?),
                            at: get_time(r, 2)?,
                            what: r.get(3),
                            reason: r.get(4),
                        })
                    })
                    .collect()
            }
        }

        fn user_row(r: &<$db as sqlx::Database>::Row) -> Result<$crate::User, $crate::StoreError> {
            Ok($crate::User {
                id: get_uuid(r, 0)?,
                user: $crate::NewUser {
                    tenant: get_opt_uuid(r, 1)?.map(trygg_core::TenantId),
                    email: r.get(2),
                    name: r.get(3),
                    role: $crate::parse_text("role", r.get(4))?,
                    password_hash: r.get(5),
                },
            })
        }

        fn wearer_row(r: &<$db as sqlx::Database>::Row) -> Result<$crate::Wearer, $crate::StoreError> {
            Ok($crate::Wearer {
                id: trygg_core::WearerId(get_uuid(r, 0)?),
                fields: $crate::WearerFields {
                    name: r.get(1),
                    note: r.get(2),
                    contact_name: r.get(3),
                    contact_phone: r.get(4),
                    team: get_opt_uuid(r, 5)?,
                },
                deactivated_at: get_opt_time(r, 6)?,
            })
        }

        fn device_row(r: &<$db as sqlx::Database>::Row) -> Result<$crate::DeviceInfo, $crate::StoreError> {
            Ok($crate::DeviceInfo {
                id: $crate::parse_device(r.get(0))?,
                protocol: $crate::parse_protocol(r.get(1))?,
                wearer: get_opt_uuid(r, 2)?.map(trygg_core::WearerId),
            })
        }

        /// Binds inside a transaction: the device must be in the tenant and unbound.
        async fn bind_in(
            tx: &mut sqlx::Transaction<'_, $db>,
            tenant: trygg_core::TenantId,
            device: &trygg_core::DeviceId,
            wearer: trygg_core::WearerId,
            at: chrono::DateTime<chrono::Utc>,
        ) -> Result<(), $crate::StoreError> {
            let done =
                sqlx::query("update devices set wearer_id = $1 where tenant_id = $2 and id = $3 and wearer_id is null")
                    .bind(db_id(wearer.0))
                    .bind(db_id(tenant.0))
                    .bind(device.as_str())
                    .execute(&mut **tx)
                    .await
                    .map_err($crate::conflict("device binding"))?;
            if done.rows_affected() != 1 {
                return Err(device_state_error(tx, tenant, device, "device is bound already").await);
            }
            sqlx::query(
                "insert into device_bindings (tenant_id, device_id, wearer_id, bound_at) values ($1, $2, $3, $4)",
            )
            .bind(db_id(tenant.0))
            .bind(device.as_str())
            .bind(db_id(wearer.0))
            .bind(db_time(at))
            .execute(&mut **tx)
            .await
            .map_err($crate::conflict("device binding"))?;
            Ok(())
        }

        /// Unbinds inside a transaction and returns the wearer it was bound to.
        async fn unbind_in(
            tx: &mut sqlx::Transaction<'_, $db>,
            tenant: trygg_core::TenantId,
            device: &trygg_core::DeviceId,
            at: chrono::DateTime<chrono::Utc>,
        ) -> Result<trygg_core::WearerId, $crate::StoreError> {
            let wearer = sqlx::query("select wearer_id from devices where tenant_id = $1 and id = $2")
                .bind(db_id(tenant.0))
                .bind(device.as_str())
                .fetch_optional(&mut **tx)
                .await?;
            let Some(wearer) = wearer.as_ref().map(|r| get_opt_uuid(r, 0)).transpose()?.flatten() else {
                return Err(device_state_error(tx, tenant, device, "device is not bound").await);
            };
            sqlx::query("update devices set wearer_id = null where id = $1")
                .bind(device.as_str())
                .execute(&mut **tx)
                .await?;
            sqlx::query("update device_bindings set unbound_at = $1 where device_id = $2 and unbound_at is null")
                .bind(db_time(at))
                .bind(device.as_str())
                .execute(&mut **tx)
                .await?;
            Ok(trygg_core::WearerId(wearer))
        }

        /// After a binding change matched no row: the device is missing (in this tenant) or in
        /// the wrong state.
        async fn device_state_error(
            tx: &mut sqlx::Transaction<'_, $db>,
            tenant: trygg_core::TenantId,
            device: &trygg_core::DeviceId,
            conflict: &'static str,
        ) -> $crate::StoreError {
            let exists = sqlx::query("select 1 from devices where tenant_id = $1 and id = $2")
                .bind(db_id(tenant.0))
                .bind(device.as_str())
                .fetch_optional(&mut **tx)
                .await;
            match exists {
                Ok(Some(_)) => $crate::StoreError::WrongState(conflict),
                Ok(None) => $crate::StoreError::NotFound("device"),
                Err(e) => $crate::StoreError::Database(e),
            }
        }
    };
}

pub(crate) use impl_directory;
