//! Bulk-sync control for admins: start a run (or approve a held one with `force`) by
//! asynchronous invoke of the bulk-sync function, read a run, and the sync status.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::base::clock::iso8601;
use crate::base::clock::now_ms;
use crate::error::{Error, ProblemCode};
use crate::features::audit::{self, Actor, AuditAction};
use crate::features::sync::{start_run, SyncRequest};
use crate::outside::store::{RunCost, SyncCounts, SyncMode, SyncRun, SyncStatus};
use crate::rules::policy::Action;
use crate::services::Services;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StartSyncRequest {
    pub mode: SyncMode,
    /// (A flag left `false` is not named in the audit record, as it was not given.)
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

impl StartSyncRequest {
    /// The names of the fields the request sets (for the audit record).
    fn field_names(&self) -> Vec<String> {
        audit::field_names(self)
    }
}

/// `202 {"runId": ...}`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncStarted {
    pub run_id: String,
}

/// Start a bulk-sync run by asynchronous invoke; answers its run id at once. A run with `force`
/// approves the deactivations a previous run held back.
pub async fn start_sync(
    services: &Services,
    actor: Actor<'_>,
    req: &StartSyncRequest,
) -> Result<SyncStarted, Error> {
    let result = async {
        services
            .policy
            .allow_route(actor.principal, Action::ControlSync)?;
        invoke_sync(services, req)
            .await
            .map(|run_id| SyncStarted { run_id })
    }
    .await;
    let action = if req.force {
        AuditAction::SyncApprove
    } else {
        AuditAction::SyncStart
    };
    audit::record(
        services,
        actor,
        action,
        audit::SYNC,
        &req.field_names(),
        &result,
    )
    .await;
    result
}

async fn invoke_sync(services: &Services, req: &StartSyncRequest) -> Result<String, Error> {
    let run_id = crate::outside::store::SyncRun::new_id(now_ms());
    let run = SyncRequest {
        mode: req.mode,
        dry_run: req.dry_run,
        force: req.force,
        run_id: Some(run_id.clone()),
        deadline_ms: None,
    };
    match start_run(services, &services.config.sync_function_name, &run).await {
        Ok(()) => Ok(run_id),
        Err(reason) => {
            tracing::error!(error = %reason, "could not start the bulk sync");
            Err(Error::Unavailable {
                code: ProblemCode::SyncUnavailable,
                detail: "the bulk-sync function could not be started".into(),
            })
        }
    }
}

/// A run as the API shows it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncRunView {
    pub run_id: String,
    pub mode: SyncMode,
    /// An incremental run that reconciled fully (a gap in the events).
    pub escalated: bool,
    pub status: SyncStatus,
    pub started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    pub counts: SyncCounts,
    /// DynamoDB capacity units (as DynamoDB reported them) and Keycloak requests of the run.
    pub cost: RunCost,
    /// Keycloak's clock minus ours (ms), measured at the run's start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keycloak_clock_skew_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Value>,
    pub errors: Vec<String>,
}

impl From<&SyncRun> for SyncRunView {
    fn from(r: &SyncRun) -> Self {
        SyncRunView {
            run_id: r.run_id.clone(),
            mode: r.mode,
            escalated: r.escalated,
            status: r.status,
            started_at: iso8601(r.started_at),
            finished_at: r.finished_at.map(iso8601),
            counts: r.counts.clone(),
            cost: r.cost,
            keycloak_clock_skew_ms: r.keycloak_clock_skew_ms,
            plan: r.plan.clone(),
            errors: r.errors.clone(),
        }
    }
}

pub async fn sync_run(
    services: &Services,
    actor: Actor<'_>,
    run_id: &str,
) -> Result<SyncRunView, Error> {
    services
        .policy
        .allow_route(actor.principal, Action::ControlSync)?;
    if !SyncRun::is_run_id(run_id) {
        return Err(Error::NotFound);
    }
    let run = services
        .store
        .get_run(run_id)
        .await?
        .ok_or(Error::NotFound)?;
    Ok(SyncRunView::from(&run))
}

/// `GET /admin/sync/status`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatusView {
    pub last_run: Option<SyncRunView>,
    pub last_success_at: Option<String>,
    pub last_full_run_at: Option<String>,
    pub event_cursor: Option<String>,
    pub users_synced_last24h: u64,
    pub runs_last24h: usize,
    pub failure_rate_last24h: f64,
    /// Drift the last full run found.
    pub users_only_in_keycloak: Option<u64>,
    pub users_only_local: Option<u64>,
    pub as_of_run_id: Option<String>,
}

/// Last run, last success, users synced and failure rate over 24 h, and the drift the last full
/// run found (users only in Keycloak, users only local).
pub async fn sync_status(services: &Services, actor: Actor<'_>) -> Result<SyncStatusView, Error> {
    services
        .policy
        .allow_route(actor.principal, Action::ControlSync)?;
    let state = services.store.sync_state().await?;
    let runs = services.store.recent_runs(500).await?;
    let since = now_ms() - 24 * 3600 * 1000;
    let day: Vec<_> = runs
        .iter()
        .filter(|r| r.started_at >= since && r.status.is_finished())
        .collect();
    let failed = day
        .iter()
        .filter(|r| r.status == SyncStatus::Failed)
        .count();
    let last_full = runs
        .iter()
        .find(|r| r.was_full() && r.status.is_finished() && r.status != SyncStatus::Skipped);
    Ok(SyncStatusView {
        last_run: runs.first().map(SyncRunView::from),
        last_success_at: state.last_success_at.map(iso8601),
        last_full_run_at: state.last_full_run_at.map(iso8601),
        event_cursor: state.event_cursor_ms.map(iso8601),
        users_synced_last24h: day.iter().map(|r| r.counts.written()).sum(),
        runs_last24h: day.len(),
        failure_rate_last24h: if day.is_empty() {
            0.0
        } else {
            failed as f64 / day.len() as f64
        },
        users_only_in_keycloak: last_full.map(|r| r.counts.only_in_keycloak),
        users_only_local: last_full.map(|r| r.counts.only_local),
        as_of_run_id: last_full.map(|r| r.run_id.clone()),
    })
}
