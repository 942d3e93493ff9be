//! Push to staff phones through Firebase Cloud Messaging (FCM) HTTP v1.
//!
//! Staff learn of an alarm from a push, so this crate is about knowing what happened to each
//! send: every FCM answer is classified into a [`SendOutcome`] the delivery worker acts on
//! (record, retry later, disable the device token, alert operators, escalate). It holds no
//! queue and no timers of its own: retries and escalation are rows the worker owns, so a
//! restart loses nothing.
//!
//! Where to start reading:
//! - [`credentials`]: the service-account key file (`TRYGG_FCM_CREDENTIALS`).
//! - [`token`]: the OAuth2 JWT-bearer exchange, one cached access token per process.
//! - [`message`]: the Swedish alarm texts and the FCM message shape, payload limit included.
//! - [`client`]: one `messages:send` request and the classification of its answer.
//! - [`backoff`]: exponential backoff with full jitter, `Retry-After` as a floor.
//! - [`worker`]: the delivery worker: outbox rows to pushes, deadlines to escalations, the
//!   alarm centre's signed webhook last.
//! - `fake` (feature `fake`): a local FCM for tests, `trygg fake-fcm` and the demo.
//!
//! Google's legacy `/fcm/send` API is shut down and the crates that wrap v1 are dormant or
//! heavy, so this is a small client on `reqwest` and `jsonwebtoken` (see
//! `shared/reference/fcm-v1.md`).
#![deny(missing_docs)]

pub mod backoff;
pub mod client;
pub mod credentials;
#[cfg(feature = "fake")]
pub mod fake;
pub mod message;
pub mod token;
pub mod webhook;
pub mod worker;

pub use backoff::Backoff;
pub use client::{AuthCause, DEFAULT_ENDPOINT, FcmClient, RetryCause, SendOutcome, TokenInvalidCause};
pub use credentials::{CredentialsError, ServiceAccountKey};
pub use message::{AlarmKind, AlarmPush, Message, MessageBuilder, MessageError, Position};
pub use token::{TokenError, TokenProvider};
pub use worker::{Pass, PushMetrics, Worker, WorkerConfig};
