//! Near-real-time sync from Keycloak webhooks (README "Webhooks").
//!
//! `POST /hooks/keycloak` checks the delivery's signature (`signature`), turns it into a
//! [`UserChange`] through the format's adapter (`phase_two`), and puts it on a FIFO queue
//! (`intake`: deduplicated by the event's id, grouped by user so one user's changes are applied
//! in order); the consumer (`consumer`) re-reads each named user from Keycloak and applies it
//! through the per-user sync path (`sync::apply_user_change`). The payload's representation is
//! never applied: it only lets the consumer recognise an echo of this project's own write.

mod consumer;
mod intake;
mod phase_two;
mod signature;

pub use crate::features::sync::UserChange;
pub use consumer::{consume, Backoff, Queued};
pub use intake::{
    Intake, Receipt, ReceiptStatus, DEFAULT_MAX_EVENT_AGE_S, MAX_BODY, MAX_EVENT_LEAD_MS,
};
pub use phase_two::{EventFormat, PhaseTwo};
pub use signature::{deduplication_id, sign, signature_valid};
