//! The bulk sync (DESIGN §7): a full reconcile of every Keycloak user into the store, and an
//! incremental one from Keycloak's events. It never loses a user and never deactivates one by
//! mistake: a crawl with any failed page deactivates nobody, every suspect is confirmed one by one,
//! and a mass deactivation waits for approval. Unchanged users are never written.
//!
//! By job: `request` (what starts a run, its time budget) and `start` (invoking a run), `run`
//! (one run, recorded, and its hand-over), `crawl` (Keycloak's users page by page),
//! `memberships` (everyone's roles and groups at once), `apply` (the conditional writes and the
//! deactivations), `full` and `incremental` (the two modes), `change` (judging one user an event
//! names, also for the webhooks), `metrics` (the run's CloudWatch line).

mod apply;
mod change;
mod crawl;
mod full;
mod incremental;
mod memberships;
mod metrics;
mod request;
mod run;
mod start;

pub use change::{apply_user_change, ChangeOutcome, UserChange};
pub use metrics::metrics_line;
pub use request::{stop_writing_at, Mode, SyncRequest};
pub use run::{run, LEASE_MS};
pub use start::start_run;
