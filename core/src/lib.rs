//! handover-core: the domain, rules and use cases of the live chat handover service, its ports and
//! adapters, the HTTP edge and each function's start-up. Lambda functions are thin shells over it.
//!
//! Layers, each using only those below it: `domain` and `clock` (no I/O); `config` (every setting);
//! the ports with their adapters (`store`, `caic`, `msc`); `flow` (the use cases); `http` (the
//! routers); and, for a process, `clients` (TLS, the HTTP client, the AWS SDK), `secrets`,
//! `telemetry` and `startup`, which assembles everything.

pub mod aws_http;
pub mod caic;
pub mod channel;
pub mod clients;
pub mod clock;
pub mod config;
pub mod domain;
pub mod files;
pub mod flow;
pub mod hours;
pub mod http;
pub mod live;
pub mod metrics;
pub mod msc;
pub mod open_ahead;
pub mod outbound;
pub mod secrets;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod token;
pub mod waits;

#[cfg(any(test, feature = "test-util"))]
pub use clock::ManualClock;
pub use clock::{Clock, SystemClock};
pub use domain::{
    AgentReply, AgentStatus, EndReason, HandoverChange, HolderToken, IdempotencyKey, IntakeAnswer,
    IntakeStart, LockPolicy, OutboxMessage, OutputAdditions, Phase, QueuedMessage, Session,
    SessionId, SessionState,
};
pub use store::{
    AgentStore, Amended, ClaimOutcome, Guarded, HandoverStore, IdempotencyBegin, IdempotencyStore,
    IntakeStore, LockSlider, SessionReader, SessionStore, SlideOutcome, StartIntakeOutcome,
    StoreError,
};
