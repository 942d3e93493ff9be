//! The caseworker side of the store: accounts, wearers, consent, device bindings, zones, teams,
//! responders, tenant settings and the access log.
//!
//! Every method that reads or writes tenant data takes the caller's tenant and filters by it, so
//! another tenant's id is indistinguishable from a missing one. Each query is written once, for
//! both backends ([`crate::dialect`] encodes ids and times for each).

use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tracing::instrument;
use trygg_core::{DeviceId, TenantId, WearerId};
use uuid::Uuid;

use crate::dialect::{Row, Tx, get_opt_time, get_opt_uuid, get_time, get_uuid, query};
use crate::{Protocol, SqlStore, StoreError, conflict, narrow, parse_device, parse_protocol, parse_text};

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
    /// Creates a tenant; its name must be unique.
    async fn create_tenant(&self, name: &str) -> Result<TenantId, StoreError>;
    /// Creates a wearer in a tenant with only a name.
    async fn create_wearer(&self, tenant: TenantId, name: &str) -> Result<WearerId, StoreError>;
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

#[async_trait]
impl Directory for SqlStore {
    #[instrument(level = "debug", skip_all)]
    async fn create_tenant(&self, name: &str) -> Result<TenantId, StoreError> {
        let id = TenantId::new();
        query("insert into tenants (id, name, created_at) values ($1, $2, $3)")
            .bind(id)
            .bind(name)
            .bind(Utc::now())
            .execute(&self.db)
            .await
            .map_err(conflict("tenant"))?;
        Ok(id)
    }

    #[instrument(level = "debug", skip_all)]
    async fn create_wearer(&self, tenant: TenantId, name: &str) -> Result<WearerId, StoreError> {
        self.add_wearer(tenant, &WearerFields { name: name.to_owned(), ..WearerFields::default() }).await
    }

    #[instrument(level = "debug", skip_all)]
    async fn add_user(&self, u: &NewUser) -> Result<Uuid, StoreError> {
        let id = Uuid::new_v4();
        query(
            "insert into users (id, tenant_id, email, name, role, password_hash, created_at) \
                     values ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(u.tenant.map(|t| t.0))
        .bind(&u.email)
        .bind(&u.name)
        .bind(u.role.as_str())
        .bind(&u.password_hash)
        .bind(Utc::now())
        .execute(&self.db)
        .await
        .map_err(conflict("user"))?;
        Ok(id)
    }

    #[instrument(level = "debug", skip_all)]
    async fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let row = query("select id, tenant_id, email, name, role, password_hash from users where email = $1")
            .bind(email)
            .fetch_optional(&self.db)
            .await?;
        row.map(|r| user_row(&r)).transpose()
    }

    #[instrument(level = "debug", skip_all)]
    async fn users(&self, tenant: Option<TenantId>) -> Result<Vec<User>, StoreError> {
        let rows = query(
            "select id, tenant_id, email, name, role, password_hash from users \
                     where $1 is null or tenant_id = $1 order by email",
        )
        .bind(tenant.map(|t| t.0))
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(user_row).collect()
    }

    #[instrument(level = "debug", skip_all)]
    async fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let rows = query("select id, name from tenants order by name").fetch_all(&self.db).await?;
        rows.iter().map(|r| Ok(Tenant { id: TenantId(get_uuid(r, 0)?), name: r.get(1) })).collect()
    }

    #[instrument(level = "debug", skip_all)]
    async fn tenant(&self, id: TenantId) -> Result<Option<Tenant>, StoreError> {
        let row = query("select name from tenants where id = $1").bind(id.0).fetch_optional(&self.db).await?;
        Ok(row.map(|r| Tenant { id, name: r.get(0) }))
    }

    #[instrument(level = "debug", skip_all)]
    async fn add_wearer(&self, tenant: TenantId, f: &WearerFields) -> Result<WearerId, StoreError> {
        let id = WearerId::new();
        query(
            "insert into wearers (id, tenant_id, name, note, contact_name, contact_phone, team_id, \
                     created_at) values ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id.0)
        .bind(tenant.0)
        .bind(&f.name)
        .bind(&f.note)
        .bind(&f.contact_name)
        .bind(&f.contact_phone)
        .bind(f.team)
        .bind(Utc::now())
        .execute(&self.db)
        .await
        .map_err(conflict("wearer"))?;
        Ok(id)
    }

    #[instrument(level = "debug", skip_all)]
    async fn wearers(&self, tenant: TenantId) -> Result<Vec<Wearer>, StoreError> {
        let rows = query(
            "select id, name, note, contact_name, contact_phone, team_id, deactivated_at from wearers \
                     where tenant_id = $1 order by name, id",
        )
        .bind(tenant.0)
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(wearer_row).collect()
    }

    #[instrument(level = "debug", skip_all)]
    async fn wearer(&self, tenant: TenantId, id: WearerId) -> Result<Option<Wearer>, StoreError> {
        let row = query(
            "select id, name, note, contact_name, contact_phone, team_id, deactivated_at from wearers \
                     where tenant_id = $1 and id = $2",
        )
        .bind(tenant.0)
        .bind(id.0)
        .fetch_optional(&self.db)
        .await?;
        row.as_ref().map(wearer_row).transpose()
    }

    #[instrument(level = "debug", skip_all)]
    async fn update_wearer(
        &self,
        tenant: TenantId,
        id: WearerId,
        f: &WearerFields,
    ) -> Result<bool, StoreError> {
        let done = query(
            "update wearers set name = $1, note = $2, contact_name = $3, contact_phone = $4, team_id = $5 \
                     where tenant_id = $6 and id = $7",
        )
        .bind(&f.name)
        .bind(&f.note)
        .bind(&f.contact_name)
        .bind(&f.contact_phone)
        .bind(f.team)
        .bind(tenant.0)
        .bind(id.0)
        .execute(&self.db)
        .await
        .map_err(conflict("wearer"))?;
        Ok(done.rows_affected() == 1)
    }

    #[instrument(level = "debug", skip_all)]
    async fn deactivate_wearer(
        &self,
        tenant: TenantId,
        id: WearerId,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = query(
                    "update wearers set deactivated_at = coalesce(deactivated_at, $1) where tenant_id = $2 and id = $3",
                )
                .bind(at)
                .bind(tenant.0)
                .bind(id.0)
                .execute(&self.db)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    #[instrument(level = "debug", skip_all)]
    async fn add_consent(&self, tenant: TenantId, c: &NewConsent) -> Result<Uuid, StoreError> {
        let id = Uuid::new_v4();
        query(
            "insert into consents (id, tenant_id, wearer_id, positioning, passive_alarms, given_by, \
                     document_ref, valid_from, valid_until, recorded_by, created_at) \
                     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(id)
        .bind(tenant.0)
        .bind(c.wearer.0)
        .bind(c.positioning)
        .bind(c.passive_alarms)
        .bind(c.given_by.as_str())
        .bind(&c.document_ref)
        .bind(c.valid_from)
        .bind(c.valid_until)
        .bind(c.recorded_by)
        .bind(Utc::now())
        .execute(&self.db)
        .await
        .map_err(conflict("consent"))?;
        Ok(id)
    }

    #[instrument(level = "debug", skip_all)]
    async fn consents(&self, tenant: TenantId, wearer: Option<WearerId>) -> Result<Vec<Consent>, StoreError> {
        let rows = query(
            "select id, wearer_id, positioning, passive_alarms, given_by, document_ref, valid_from, \
                     valid_until, recorded_by, withdrawn_at from consents \
                     where tenant_id = $1 and ($2 is null or wearer_id = $2) order by created_at, id",
        )
        .bind(tenant.0)
        .bind(wearer.map(|w| w.0))
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Consent {
                    id: get_uuid(r, 0)?,
                    consent: NewConsent {
                        wearer: WearerId(get_uuid(r, 1)?),
                        positioning: r.get(2),
                        passive_alarms: r.get(3),
                        given_by: parse_text("consent giver", r.get(4))?,
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

    #[instrument(level = "debug", skip_all)]
    async fn withdraw_consent(
        &self,
        tenant: TenantId,
        wearer: WearerId,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = query(
            "update consents set withdrawn_at = coalesce(withdrawn_at, $1) \
                     where tenant_id = $2 and wearer_id = $3 and id = $4",
        )
        .bind(at)
        .bind(tenant.0)
        .bind(wearer.0)
        .bind(id)
        .execute(&self.db)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    #[instrument(level = "debug", skip_all)]
    async fn devices(&self, tenant: TenantId) -> Result<Vec<DeviceInfo>, StoreError> {
        let rows = query("select id, protocol, wearer_id from devices where tenant_id = $1 order by id")
            .bind(tenant.0)
            .fetch_all(&self.db)
            .await?;
        rows.iter().map(device_row).collect()
    }

    #[instrument(level = "debug", skip_all)]
    async fn device(&self, tenant: TenantId, id: &DeviceId) -> Result<Option<DeviceInfo>, StoreError> {
        let row = query("select id, protocol, wearer_id from devices where tenant_id = $1 and id = $2")
            .bind(tenant.0)
            .bind(id.as_str())
            .fetch_optional(&self.db)
            .await?;
        row.as_ref().map(device_row).transpose()
    }

    #[instrument(level = "debug", skip_all)]
    async fn bind_device(
        &self,
        tenant: TenantId,
        device: &DeviceId,
        wearer: WearerId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        bind_in(&mut tx, tenant, device, wearer, at).await?;
        tx.commit().await?;
        Ok(())
    }

    #[instrument(level = "debug", skip_all)]
    async fn unbind_device(
        &self,
        tenant: TenantId,
        device: &DeviceId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        unbind_in(&mut tx, tenant, device, at).await?;
        tx.commit().await?;
        Ok(())
    }

    #[instrument(level = "debug", skip_all)]
    async fn replace_device(
        &self,
        tenant: TenantId,
        old: &DeviceId,
        new: &DeviceId,
        at: DateTime<Utc>,
    ) -> Result<WearerId, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let wearer = unbind_in(&mut tx, tenant, old, at).await?;
        bind_in(&mut tx, tenant, new, wearer, at).await?;
        tx.commit().await?;
        Ok(wearer)
    }

    #[instrument(level = "debug", skip_all)]
    async fn bindings(&self, tenant: TenantId, wearer: WearerId) -> Result<Vec<Binding>, StoreError> {
        let rows = query(
            "select device_id, bound_at, unbound_at from device_bindings \
                     where tenant_id = $1 and wearer_id = $2 order by bound_at, id",
        )
        .bind(tenant.0)
        .bind(wearer.0)
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Binding {
                    device: parse_device(r.get(0))?,
                    bound_at: get_time(r, 1)?,
                    unbound_at: get_opt_time(r, 2)?,
                })
            })
            .collect()
    }

    #[instrument(level = "debug", skip_all)]
    async fn add_zone(
        &self,
        tenant: TenantId,
        wearer: WearerId,
        z: &ZoneFields,
        at: DateTime<Utc>,
    ) -> Result<Uuid, StoreError> {
        let id = Uuid::new_v4();
        query(
            "insert into zones (id, tenant_id, wearer_id, name, kind, geometry, radius_m, schedule, \
                     created_at, updated_at) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(id)
        .bind(tenant.0)
        .bind(wearer.0)
        .bind(&z.name)
        .bind(&z.kind)
        .bind(&z.geometry)
        .bind(z.radius_m)
        .bind(z.schedule.as_deref())
        .bind(at)
        .bind(at)
        .execute(&self.db)
        .await
        .map_err(conflict("zone"))?;
        Ok(id)
    }

    #[instrument(level = "debug", skip_all)]
    async fn zones(&self, tenant: TenantId, wearer: Option<WearerId>) -> Result<Vec<StoredZone>, StoreError> {
        let rows = query(
            "select id, wearer_id, name, kind, geometry, radius_m, schedule, updated_at from zones \
                     where tenant_id = $1 and ($2 is null or wearer_id = $2) order by created_at, id",
        )
        .bind(tenant.0)
        .bind(wearer.map(|w| w.0))
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredZone {
                    id: get_uuid(r, 0)?,
                    wearer: WearerId(get_uuid(r, 1)?),
                    fields: ZoneFields {
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

    #[instrument(level = "debug", skip_all)]
    async fn update_zone(
        &self,
        tenant: TenantId,
        wearer: WearerId,
        id: Uuid,
        z: &ZoneFields,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = query(
            "update zones set name = $1, kind = $2, geometry = $3, radius_m = $4, schedule = $5, \
                     updated_at = $6 where tenant_id = $7 and wearer_id = $8 and id = $9",
        )
        .bind(&z.name)
        .bind(&z.kind)
        .bind(&z.geometry)
        .bind(z.radius_m)
        .bind(z.schedule.as_deref())
        .bind(at)
        .bind(tenant.0)
        .bind(wearer.0)
        .bind(id)
        .execute(&self.db)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    #[instrument(level = "debug", skip_all)]
    async fn delete_zone(&self, tenant: TenantId, wearer: WearerId, id: Uuid) -> Result<bool, StoreError> {
        let done = query("delete from zones where tenant_id = $1 and wearer_id = $2 and id = $3")
            .bind(tenant.0)
            .bind(wearer.0)
            .bind(id)
            .execute(&self.db)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    #[instrument(level = "debug", skip_all)]
    async fn add_team(&self, tenant: TenantId, name: &str) -> Result<Uuid, StoreError> {
        let id = Uuid::new_v4();
        query("insert into teams (id, tenant_id, name, created_at) values ($1, $2, $3, $4)")
            .bind(id)
            .bind(tenant.0)
            .bind(name)
            .bind(Utc::now())
            .execute(&self.db)
            .await
            .map_err(conflict("team"))?;
        Ok(id)
    }

    #[instrument(level = "debug", skip_all)]
    async fn teams(&self, tenant: TenantId) -> Result<Vec<Team>, StoreError> {
        let rows = query(
            "select t.id, t.name, m.user_id from teams t left join team_members m on m.team_id = t.id \
                     where t.tenant_id = $1 order by t.name, t.id, m.user_id",
        )
        .bind(tenant.0)
        .fetch_all(&self.db)
        .await?;
        let mut teams: Vec<Team> = Vec::new();
        for r in &rows {
            let id = get_uuid(r, 0)?;
            if teams.last().is_none_or(|t| t.id != id) {
                teams.push(Team { id, name: r.get(1), members: Vec::new() });
            }
            if let (Some(team), Some(member)) = (teams.last_mut(), get_opt_uuid(r, 2)?) {
                team.members.push(member);
            }
        }
        Ok(teams)
    }

    #[instrument(level = "debug", skip_all)]
    async fn set_team_members(
        &self,
        tenant: TenantId,
        team: Uuid,
        members: &[Uuid],
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let found = query("select 1 from teams where tenant_id = $1 and id = $2")
            .bind(tenant.0)
            .bind(team)
            .fetch_optional(&mut tx)
            .await?;
        if found.is_none() {
            return Ok(false);
        }
        query("delete from team_members where team_id = $1").bind(team).execute(&mut tx).await?;
        for m in members {
            query("insert into team_members (team_id, user_id) values ($1, $2) on conflict do nothing")
                .bind(team)
                .bind(*m)
                .execute(&mut tx)
                .await
                .map_err(conflict("team member"))?;
        }
        tx.commit().await?;
        Ok(true)
    }

    #[instrument(level = "debug", skip_all)]
    async fn set_responders(
        &self,
        tenant: TenantId,
        wearer: WearerId,
        plan: &ResponderPlan,
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let done = query("update wearers set alarm_centre_url = $1 where tenant_id = $2 and id = $3")
            .bind(plan.alarm_centre_url.as_deref())
            .bind(tenant.0)
            .bind(wearer.0)
            .execute(&mut tx)
            .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        query("delete from responders where wearer_id = $1").bind(wearer.0).execute(&mut tx).await?;
        for (position, step) in (0_i64..).zip(&plan.steps) {
            let (user, team) = match step.target {
                ResponderTarget::User(u) => (Some(u), None),
                ResponderTarget::Team(t) => (None, Some(t)),
            };
            query(
                "insert into responders (wearer_id, position, user_id, team_id, escalate_after_secs) \
                         values ($1, $2, $3, $4, $5)",
            )
            .bind(wearer.0)
            .bind(position)
            .bind(user)
            .bind(team)
            .bind(i64::from(step.escalate_after_secs))
            .execute(&mut tx)
            .await
            .map_err(conflict("responder"))?;
        }
        tx.commit().await?;
        Ok(true)
    }

    #[instrument(level = "debug", skip_all)]
    async fn responders(&self, tenant: TenantId, wearer: WearerId) -> Result<ResponderPlan, StoreError> {
        let url: Option<Option<String>> =
            query("select alarm_centre_url from wearers where tenant_id = $1 and id = $2")
                .bind(tenant.0)
                .bind(wearer.0)
                .fetch_optional(&self.db)
                .await?
                .map(|r| r.get(0));
        let rows = query(
            "select r.user_id, r.team_id, r.escalate_after_secs from responders r \
                     join wearers w on w.id = r.wearer_id where r.wearer_id = $1 and w.tenant_id = $2 \
                     order by r.position",
        )
        .bind(wearer.0)
        .bind(tenant.0)
        .fetch_all(&self.db)
        .await?;
        let steps = rows
            .iter()
            .map(|r| {
                let target = match (get_opt_uuid(r, 0)?, get_opt_uuid(r, 1)?) {
                    (Some(u), _) => ResponderTarget::User(u),
                    (None, Some(t)) => ResponderTarget::Team(t),
                    (None, None) => {
                        return Err(StoreError::Corrupt { what: "responder", value: String::new() });
                    }
                };
                let secs: i64 = r.get(2);
                Ok(Responder {
                    target,
                    escalate_after_secs: u32::try_from(secs).map_err(|_| StoreError::Corrupt {
                        what: "escalation delay",
                        value: secs.to_string(),
                    })?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(ResponderPlan { steps, alarm_centre_url: url.flatten() })
    }

    #[instrument(level = "debug", skip_all)]
    async fn settings(&self, tenant: TenantId) -> Result<Option<TenantSettings>, StoreError> {
        let row = query(
            "select time_zone, exit_policy, offline_after_secs, battery_low_pct, fix_retention_days, \
                     on_site_limit_secs, repeat_join_secs, fallback_team_id, fallback_alarm_centre_url, \
                     battery_rearm_margin_pct, quiet_from_hour, quiet_until_hour, \
                     test_alarm_from_hour, test_alarm_until_hour, report_interval_secs, report_interval_fast_secs \
                     from tenant_settings where tenant_id = $1",
        )
        .bind(tenant.0)
        .fetch_optional(&self.db)
        .await?;
        row.map(|r| {
            Ok(TenantSettings {
                time_zone: r.get(0),
                exit_policy: r.get(1),
                offline_after_secs: narrow("offline threshold", r.get(2))?,
                battery_low_pct: narrow("battery threshold", r.get(3))?,
                fix_retention_days: narrow("retention", r.get(4))?,
                on_site_limit_secs: narrow("on-site limit", r.get(5))?,
                repeat_join_secs: narrow("repeat join window", r.get(6))?,
                fallback_team: get_opt_uuid(&r, 7)?,
                fallback_alarm_centre_url: r.get(8),
                supervision: SupervisionSettings {
                    battery_rearm_margin_pct: narrow("battery re-arm margin", r.get(9))?,
                    quiet_from_hour: narrow("quiet hours start", r.get(10))?,
                    quiet_until_hour: narrow("quiet hours end", r.get(11))?,
                    test_alarm_from_hour: narrow("test alarm window start", r.get(12))?,
                    test_alarm_until_hour: narrow("test alarm window end", r.get(13))?,
                    report_interval_secs: narrow("report interval", r.get(14))?,
                    report_interval_fast_secs: narrow("fast report interval", r.get(15))?,
                },
            })
        })
        .transpose()
    }

    #[instrument(level = "debug", skip_all)]
    async fn put_settings(
        &self,
        tenant: TenantId,
        s: &TenantSettings,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        query(
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
                .bind(tenant.0)
                .bind(&s.time_zone)
                .bind(&s.exit_policy)
                .bind(i64::from(s.offline_after_secs))
                .bind(i64::from(s.battery_low_pct))
                .bind(i64::from(s.fix_retention_days))
                .bind(at)
                .bind(i64::from(s.on_site_limit_secs))
                .bind(i64::from(s.repeat_join_secs))
                .bind(s.fallback_team)
                .bind(s.fallback_alarm_centre_url.as_deref())
                .bind(i64::from(s.supervision.battery_rearm_margin_pct))
                .bind(i64::from(s.supervision.quiet_from_hour))
                .bind(i64::from(s.supervision.quiet_until_hour))
                .bind(i64::from(s.supervision.test_alarm_from_hour))
                .bind(i64::from(s.supervision.test_alarm_until_hour))
                .bind(i64::from(s.supervision.report_interval_secs))
                .bind(i64::from(s.supervision.report_interval_fast_secs))
                .execute(&self.db)
                .await
                .map_err(conflict("settings"))?;
        Ok(())
    }

    #[instrument(level = "debug", skip_all)]
    async fn log_access(&self, e: &AccessEntry) -> Result<(), StoreError> {
        query(
            "insert into access_log (tenant_id, user_id, wearer_id, at, what, reason) \
                     values ($1, $2, $3, $4, $5, $6)",
        )
        .bind(e.tenant.0)
        .bind(e.user)
        .bind(e.wearer.0)
        .bind(e.at)
        .bind(&e.what)
        .bind(&e.reason)
        .execute(&self.db)
        .await
        .map_err(conflict("access log entry"))?;
        Ok(())
    }

    #[instrument(level = "debug", skip_all)]
    async fn access_log(&self, tenant: TenantId, limit: u32) -> Result<Vec<AccessEntry>, StoreError> {
        let rows = query(
            "select user_id, wearer_id, at, what, reason from access_log where tenant_id = $1 \
                     order by at desc, id desc limit $2",
        )
        .bind(tenant.0)
        .bind(i64::from(limit))
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AccessEntry {
                    tenant,
                    user: get_uuid(r, 0)?,
                    wearer: WearerId(get_uuid(r, 1)?),
                    at: get_time(r, 2)?,
                    what: r.get(3),
                    reason: r.get(4),
                })
            })
            .collect()
    }
}

fn user_row(r: &Row) -> Result<User, StoreError> {
    Ok(User {
        id: get_uuid(r, 0)?,
        user: NewUser {
            tenant: get_opt_uuid(r, 1)?.map(TenantId),
            email: r.get(2),
            name: r.get(3),
            role: parse_text("role", r.get(4))?,
            password_hash: r.get(5),
        },
    })
}

fn wearer_row(r: &Row) -> Result<Wearer, StoreError> {
    Ok(Wearer {
        id: WearerId(get_uuid(r, 0)?),
        fields: WearerFields {
            name: r.get(1),
            note: r.get(2),
            contact_name: r.get(3),
            contact_phone: r.get(4),
            team: get_opt_uuid(r, 5)?,
        },
        deactivated_at: get_opt_time(r, 6)?,
    })
}

fn device_row(r: &Row) -> Result<DeviceInfo, StoreError> {
    Ok(DeviceInfo {
        id: parse_device(r.get(0))?,
        protocol: parse_protocol(r.get(1))?,
        wearer: get_opt_uuid(r, 2)?.map(WearerId),
    })
}

/// Binds inside a transaction: the device must be in the tenant and unbound.
async fn bind_in(
    tx: &mut Tx,
    tenant: TenantId,
    device: &DeviceId,
    wearer: WearerId,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let done =
        query("update devices set wearer_id = $1 where tenant_id = $2 and id = $3 and wearer_id is null")
            .bind(wearer.0)
            .bind(tenant.0)
            .bind(device.as_str())
            .execute(&mut *tx)
            .await
            .map_err(conflict("device binding"))?;
    if done.rows_affected() != 1 {
        return Err(device_state_error(tx, tenant, device, "device is bound already").await);
    }
    insert_binding(tx, tenant, device, wearer, at).await
}

/// Records that `device` is bound to `wearer` from `at` (the device row says so already).
pub(crate) async fn insert_binding(
    tx: &mut Tx,
    tenant: TenantId,
    device: &DeviceId,
    wearer: WearerId,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    query("insert into device_bindings (tenant_id, device_id, wearer_id, bound_at) values ($1, $2, $3, $4)")
        .bind(tenant)
        .bind(device.as_str())
        .bind(wearer)
        .bind(at)
        .execute(tx)
        .await
        .map_err(conflict("device binding"))?;
    Ok(())
}

/// Unbinds inside a transaction and returns the wearer it was bound to.
async fn unbind_in(
    tx: &mut Tx,
    tenant: TenantId,
    device: &DeviceId,
    at: DateTime<Utc>,
) -> Result<WearerId, StoreError> {
    let wearer = query("select wearer_id from devices where tenant_id = $1 and id = $2")
        .bind(tenant.0)
        .bind(device.as_str())
        .fetch_optional(&mut *tx)
        .await?;
    let Some(wearer) = wearer.as_ref().map(|r| get_opt_uuid(r, 0)).transpose()?.flatten() else {
        return Err(device_state_error(tx, tenant, device, "device is not bound").await);
    };
    query("update devices set wearer_id = null where id = $1")
        .bind(device.as_str())
        .execute(&mut *tx)
        .await?;
    query("update device_bindings set unbound_at = $1 where device_id = $2 and unbound_at is null")
        .bind(at)
        .bind(device.as_str())
        .execute(&mut *tx)
        .await?;
    Ok(WearerId(wearer))
}

/// After a binding change matched no row: the device is missing (in this tenant) or in
/// the wrong state.
async fn device_state_error(
    tx: &mut Tx,
    tenant: TenantId,
    device: &DeviceId,
    conflict: &'static str,
) -> StoreError {
    let exists = query("select 1 from devices where tenant_id = $1 and id = $2")
        .bind(tenant.0)
        .bind(device.as_str())
        .fetch_optional(&mut *tx)
        .await;
    match exists {
        Ok(Some(_)) => StoreError::WrongState(conflict),
        Ok(None) => StoreError::NotFound("device"),
        Err(e) => StoreError::Database(e),
    }
}
