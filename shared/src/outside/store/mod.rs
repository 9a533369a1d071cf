//! The application's user store: one DynamoDB table (DESIGN §6). Every write that can race another
//! is conditional (a `version`, or "newer observation wins"), and the same content twice writes
//! nothing. No password and no token is ever stored: sessions keep a SHA-256 of the refresh token.
//!
//! | item | pk | sk |
//! |---|---|---|
//! | user | `USER#<id>` | `PROFILE` (GSI1: username by first-character shard, GSI2: email likewise; SyncDigest: GSI1's keys, projecting only `kc_hash`, `status`, `deleted_reason`) |
//! | session | `USER#<id>` | `SESSION#<sid>` |
//! | sync lease / state / run | `SYNC` | `LEASE` / `STATE` / `RUN#<run id>` |
//! | idempotency record | `IDEMPOTENCY#<hash>` | `REGISTER` (and a pointer under the user: `USER#<id>` / `IDEMPOTENCY#<hash>`) |
//! | audit record | `AUDIT#<target id>` | `<time>#<request id>` (GSI3: `AUDIT_ACTOR#<actor id>`) |
//! | attempt counter | `THROTTLE#<kind>#<key>` | `<window start>` |
//! | repair | `REPAIR` | `<time>#<id>` |
//! | webhook event taken | `HOOK_EVENT#<digest of the event id>` | `EVENT` |
//!
//! What each holds of a person, and what a hard delete does to it: `erasure`.

mod audit;
mod capacity;
mod digest;
mod edits;
mod erasure;
mod events;
mod idempotency;
mod listing;
mod logins;
mod registering;
mod repairs;
mod sessions;
mod sign_in;
mod sync;
mod table;
mod throttle;
mod user_record;
mod users;

pub use audit::{AuditQuery, AuditRecord};
pub use capacity::{Capacity, CapacityMeter};
pub use digest::{digest_segments, Digest, StoredState, SYNC_INDEX};
pub use edits::WriteLock;
pub use erasure::Erased;
pub use idempotency::Claim;
pub use listing::ListQuery;
pub use logins::LoginRecord;
pub use repairs::{Repair, RepairKind};
pub use sessions::{token_hash, Session, SessionEnd};
pub use sync::{RunCost, SyncCounts, SyncMode, SyncRun, SyncState, SyncStatus};
pub use table::{create_table_from_spec, Item, Page, Store, StoreError};
pub use throttle::AttemptWindow;
pub use user_record::{
    ApplyOutcome, Attributes, KeycloakFields, Pending, User, UserStatus, DELETED_BY_ADMIN,
    MISSING_IN_KEYCLOAK,
};
pub use users::CREATE_CONCURRENCY;
