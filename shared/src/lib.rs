//! handover-core: the domain, rules and ports of the live chat handover service, with their
//! adapters. Lambda functions are thin shells over what lives here.

pub mod api;
pub mod aws_http;
pub mod caic;
pub mod clock;
pub mod config;
pub mod domain;
pub mod flow;
pub mod msc;
pub mod secrets;
pub mod store;
pub mod telemetry;
pub mod wiring;

pub use clock::{Clock, ManualClock, SystemClock};
pub use domain::{
    AgentStatus, IntakeAnswer, IntakeStart, OutputAdditions, Phase, Session, SessionState,
};
pub use store::{
    ClaimOutcome, Guarded, HandoverStore, IdempotencyBegin, IdempotencyStore, IntakeStore,
    LockPolicy, LockRefresher, SessionReader, SessionStore, StartIntakeOutcome, StoreError,
    TouchOutcome,
};
