//! One run: its lease, the repairs first, the mode's work, the run record written whatever
//! happens, and the hand-over to a follow-up invocation when the time budget ran out.

use crate::base::clock::{now_ms, EpochSecs};
use crate::base::deadline;
use crate::error::Error;
use crate::outside::store::{RunCost, SyncCounts, SyncRun, SyncStatus};
use crate::services::Services;

use super::full::full;
use super::incremental::incremental;
use super::metrics::emit_metrics;
use super::request::{Mode, SyncRequest};
use super::start::start_run;

/// How long a run holds the lease; a crashed run's lease expires and the next run takes over.
pub const LEASE_MS: i64 = 15 * 60 * 1000;
/// Run records are kept this long (TTL).
const RUN_RETENTION_S: i64 = 30 * 24 * 3600;

/// A run that has just started.
fn started(req: &SyncRequest, at: i64) -> SyncRun {
    SyncRun {
        run_id: req.run_id.clone().unwrap_or_else(|| SyncRun::new_id(at)),
        mode: req.mode,
        escalated: false,
        status: SyncStatus::Running,
        started_at: at,
        finished_at: None,
        counts: SyncCounts::default(),
        plan: None,
        errors: Vec::new(),
        cost: RunCost::default(),
        keycloak_clock_skew_ms: None,
        expires_at: EpochSecs::of_ms(at).after(RUN_RETENTION_S),
    }
}

/// Run one sync and record it. The run record is written whatever happens.
pub async fn run(services: &Services, req: SyncRequest) -> Result<SyncRun, Error> {
    let started_at = now_ms();
    let mut run = started(&req, started_at);
    let store = &services.store;
    let (capacity_before, requests_before) = (store.consumed(), services.keycloak.requests_sent());
    if !store
        .acquire_lease(&run.run_id, started_at + LEASE_MS, started_at)
        .await?
    {
        run.status = SyncStatus::Skipped;
        run.errors.push("another run holds the lease".into());
        run.finished_at = Some(now_ms());
        store.put_run(&run).await?;
        return Ok(run);
    }
    store.put_run(&run).await?;
    let mut counts = SyncCounts::default();
    // What timed-out registrations and logins left behind is finished first.
    let repaired = crate::features::repair::run(services).await;
    counts.repaired = repaired.removed;
    counts.repairs_open = repaired.open;
    // Event cursors are in Keycloak's time: its clock is read each run.
    match services.keycloak.clock_skew_ms().await {
        Ok(skew) => run.keycloak_clock_skew_ms = Some(skew),
        Err(e) => run
            .errors
            .push(format!("Keycloak's clock could not be read: {e}")),
    }
    let outcome = match req.mode {
        Mode::Full => full(services, &req, &mut run, &mut counts).await,
        Mode::Incremental => incremental(services, &req, &mut run, &mut counts).await,
    };
    if let Err(e) = &outcome {
        run.status = SyncStatus::Failed;
        run.errors.push(e.to_string());
    }
    let finished = now_ms();
    run.finished_at = Some(finished);
    counts.duration_ms = (finished - started_at).max(0) as u64;
    counts.drift = counts.written() + counts.deactivated;
    run.counts = counts;
    let capacity = store.consumed() - capacity_before;
    run.cost = RunCost {
        read_capacity_units: capacity.read_units,
        write_capacity_units: capacity.write_units,
        keycloak_requests: services.keycloak.requests_sent() - requests_before,
    };
    // In the time kept back for compensating: a run cut off at its deadline is still recorded,
    // and its lease released, instead of leaving "running" behind for the lease to expire.
    let recorded = deadline::compensate(finish(services, &req, &mut run)).await;
    recorded?;
    outcome.map(|_| run)
}

/// The run recorded, its lease released, and, if it handed over, the follow-up started.
async fn finish(services: &Services, req: &SyncRequest, run: &mut SyncRun) -> Result<(), Error> {
    // A follow-up that would get no further fails instead of handing over forever.
    if run.status == SyncStatus::Continued && run.counts.written() == 0 {
        run.status = SyncStatus::Failed;
        run.errors
            .push("the time budget is too small to make progress".into());
    }
    let store = &services.store;
    let recorded = store.put_run(run).await;
    if let Err(e) = store.release_lease(&run.run_id).await {
        tracing::warn!(error = %e, "could not release the sync lease; it expires by itself");
    }
    // Only once the lease is free: the follow-up takes it.
    if run.status == SyncStatus::Continued {
        continue_in_new_invocation(services, req).await;
    }
    emit_metrics(run);
    tracing::info!(run_id = %run.run_id, mode = ?run.mode, status = ?run.status, counts = ?run.counts, "sync run finished");
    recorded.map_err(Error::from)
}

/// Hand the rest of a full run to a new invocation of this function. Writes are conditional and
/// hash-based, so the follow-up skips everything already written and goes on from there.
async fn continue_in_new_invocation(services: &Services, req: &SyncRequest) {
    let function = crate::base::config::LambdaEnv::get()
        .function_name
        .clone()
        .unwrap_or_else(|| services.config.sync_function_name.clone());
    let follow_up = SyncRequest {
        mode: Mode::Full,
        dry_run: false,
        force: req.force,
        run_id: None,
        deadline_ms: None,
    };
    if let Err(e) = start_run(services, &function, &follow_up).await {
        tracing::error!(error = %e,
            "could not start the follow-up run; the next scheduled run picks up from here");
    }
}
