//! An API on a fresh database, called in-process, with a tenant pair set up for tests.

#![allow(dead_code, unreachable_pub)] // each test file uses its own share of these helpers

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, Response, StatusCode};
use chrono::Utc;
use chrono::{DateTime, TimeDelta};
use serde_json::{Value, json};
use tokio::sync::watch;
use tower::ServiceExt;
use trygg_api::{ApiState, Tokens, ZoneIndexes};
use trygg_core::AlarmKind;
use trygg_core::{DeviceId, Fix, FixSource, TenantId, WearerId};
use trygg_store::alarms::{EngineCommit, NewAlarm, Position, Signal, SignalOutcome};
use trygg_store::testing::{add_user, add_watch};
use trygg_store::{ConsentGiver, FixBatch, NewConsent, NewFix, Role, Store, WearerFields, ZoneFields};
use uuid::Uuid;

pub const SECRET: &[u8] = b"test-secret-that-is-long-enough-for-hs256!";
/// Live alarm streams poll this often in tests, so a test waits milliseconds, not seconds.
pub const LIVE_POLL: Duration = Duration::from_millis(20);

pub struct App {
    pub router: Router,
    pub state: ApiState,
    /// Sends true to tell the API the server is stopping.
    pub stopping: watch::Sender<bool>,
    counter: AtomicU32,
}

impl App {
    pub fn new(store: Arc<dyn Store>) -> Self {
        let (stopping, stopping_rx) = watch::channel(false);
        let state = ApiState {
            store,
            tokens: Arc::new(Tokens::new(SECRET, Duration::from_secs(3600)).unwrap()),
            zones: Arc::new(ZoneIndexes::default()),
            live_poll: LIVE_POLL,
            stopping: stopping_rx,
            devices: Default::default(),
            accounts: Default::default(),
            logins: Default::default(),
        };
        Self { router: trygg_api::router(state.clone()), state, stopping, counter: AtomicU32::new(0) }
    }

    /// A number not used before in this app, for unique names.
    pub fn next(&self) -> u32 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(Method::from_bytes(method.as_bytes()).unwrap()).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req.header("content-type", "application/json").body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// The response as it comes, for bodies that are not JSON (CSV, event streams).
    pub async fn raw(&self, path: &str, token: &str, headers: &[(&str, &str)]) -> Response<Body> {
        let mut req = Request::builder().uri(path).header("authorization", format!("Bearer {token}"));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        self.router.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap()
    }

    pub fn token(&self, user: Uuid, tenant: Option<TenantId>, role: Role) -> String {
        self.state.tokens.issue(user, tenant, role).unwrap()
    }

    pub async fn user(&self, tenant: Option<TenantId>, role: Role) -> (Uuid, String) {
        let n = self.next();
        let (email, name) = (format!("{}-{n}@test.se", role.as_str()), format!("{} {n}", role.as_str()));
        let id = add_user(&*self.state.store, tenant, role, &email, &name).await;
        (id, self.token(id, tenant, role))
    }

    /// A tenant with one account per role, a wearer with consent, a bound watch, a zone and a team.
    pub async fn tenant(&self, name: &str) -> Fixture {
        let store = &self.state.store;
        let tenant = store.create_tenant(name).await.unwrap();
        let mut tokens = Vec::new();
        for role in [Role::TenantAdmin, Role::Caseworker, Role::Staff] {
            tokens.push((role, self.user(Some(tenant), role).await));
        }
        let staff = tokens[2].1.0;
        let caseworker = tokens[1].1.0;
        let wearer = self.wearer(tenant).await;
        let consent = self.consent(tenant, wearer, caseworker).await;
        let device = self.device(tenant, Some(wearer)).await;
        let zone = self.zone(tenant, wearer).await;
        let team = store.add_team(tenant, "Team").await.unwrap();
        Fixture { tenant, tokens, staff, wearer, consent, device, zone, team }
    }

    pub async fn wearer(&self, tenant: TenantId) -> WearerId {
        let fields = WearerFields { name: format!("Wearer {}", self.next()), ..WearerFields::default() };
        self.state.store.add_wearer(tenant, &fields).await.unwrap()
    }

    pub async fn consent(&self, tenant: TenantId, wearer: WearerId, by: Uuid) -> Uuid {
        let c = NewConsent {
            wearer,
            positioning: true,
            passive_alarms: true,
            given_by: ConsentGiver::Wearer,
            document_ref: "Dnr 1".into(),
            valid_from: Utc::now() - chrono::TimeDelta::days(1),
            valid_until: None,
            recorded_by: by,
        };
        self.state.store.add_consent(tenant, &c).await.unwrap()
    }

    /// A watch, bound to `wearer` since a day ago (so fixes the tests stamp minutes back are the
    /// wearer's positions).
    pub async fn device(&self, tenant: TenantId, wearer: Option<WearerId>) -> DeviceId {
        let id = add_watch(&*self.state.store, tenant, None, &format!("dev-{}", self.next())).await;
        if let Some(wearer) = wearer {
            let since = Utc::now() - chrono::TimeDelta::days(1);
            self.state.store.bind_device(tenant, &id, wearer, since).await.unwrap();
        }
        id
    }

    pub async fn zone(&self, tenant: TenantId, wearer: WearerId) -> Uuid {
        let z = ZoneFields {
            name: "Hemma".into(),
            kind: "stay_inside".into(),
            geometry: r#"{"type":"Point","coordinates":[13.84,58.39]}"#.into(),
            radius_m: Some(150.0),
            schedule: None,
        };
        self.state.store.add_zone(tenant, wearer, &z, Utc::now()).await.unwrap()
    }
}

pub struct Fixture {
    pub tenant: TenantId,
    pub tokens: Vec<(Role, (Uuid, String))>,
    pub staff: Uuid,
    pub wearer: WearerId,
    pub consent: Uuid,
    pub device: DeviceId,
    pub zone: Uuid,
    pub team: Uuid,
}

impl Fixture {
    pub fn token(&self, role: Role) -> &str {
        &self.tokens.iter().find(|(r, _)| *r == role).expect("a token for the role").1.1
    }
}

/// A GPS fix at `time`.
pub fn fix(time: DateTime<Utc>, lat: f64, lon: f64, accuracy_m: Option<f64>) -> Fix {
    Fix { accuracy_m, source: FixSource::default(), ..Fix::gps(time, lat, lon) }
}

/// Stores `fixes` of `device` as the group committer does.
pub async fn store_fixes(app: &App, device: &DeviceId, fixes: Vec<Fix>, received_at: DateTime<Utc>) {
    let fixes = fixes.into_iter().map(|fix| NewFix { fix, late: false }).collect();
    let batch = FixBatch { device: device.clone(), received_at, fixes };
    app.state.store.insert_fixes(&[batch]).await.unwrap();
}

/// A square polygon around Skövde centrum.
pub fn square(lon: f64, lat: f64, d: f64) -> Value {
    json!({ "type": "Polygon", "coordinates": [[[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d], [lon, lat]]] })
}

/// Raises an alarm of `wearer` (from `device`) the way the engine does, as of `now`, with a
/// position 5 s old.
pub async fn raise_alarm(
    app: &App,
    f: &Fixture,
    wearer: WearerId,
    device: Option<DeviceId>,
    kind: AlarmKind,
    now: DateTime<Utc>,
) -> Uuid {
    let alarm = NewAlarm {
        tenant: f.tenant,
        wearer: Some(wearer),
        device,
        kind,
        zone: None,
        trigger_time: now - TimeDelta::seconds(5),
        position: Some((
            Position { lat: 58.39, lon: 13.84, accuracy_m: Some(25.0) },
            now - TimeDelta::seconds(5),
        )),
        last_known_position: false,
        recipients: Vec::new(),
        device_alarm: None,
    };
    let commit = EngineCommit { signals: vec![Signal::Raise(alarm)], ..EngineCommit::default() };
    match app.state.store.engine_commit(&commit, now).await.unwrap()[..] {
        [SignalOutcome::Raised(id)] => id,
        ref other => panic!("expected a new alarm, got {other:?}"),
    }
}
