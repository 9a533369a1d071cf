//! Bulk-sync control for admins: start a run (or approve a held one with `force`) by
//! asynchronous invoke of the bulk-sync function, read a run, and the sync status.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::audit::{self, Actor};
use crate::deadline::Bounded;
use crate::error::Error;
use crate::policy::Action;
use crate::services::Services;
use crate::store::now_ms;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StartSyncRequest {
    pub mode: crate::sync::Mode,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub force: bool,
}

impl StartSyncRequest {
    fn field_names(&self) -> Vec<String> {
        let mut f = vec!["mode".to_owned()];
        if self.dry_run {
            f.push("dryRun".into());
        }
        if self.force {
            f.push("force".into());
        }
        f
    }
}

/// Start a bulk-sync run by asynchronous invoke; answers its run id at once. A run with `force`
/// approves the deactivations a previous run held back.
pub async fn start_sync(
    services: &Services,
    actor: Actor<'_>,
    req: &StartSyncRequest,
) -> Result<String, Error> {
    let result = async {
        services
            .policy
            .allow_route(actor.principal, Action::ControlSync)?;
        invoke_sync(services, req).await
    }
    .await;
    let action = if req.force {
        "sync.approve"
    } else {
        "sync.start"
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
    let run_id = crate::store::SyncRun::new_id(now_ms());
    let payload =
        json!({"mode": req.mode, "dryRun": req.dry_run, "force": req.force, "runId": run_id});
    let sent = services
        .lambda
        .invoke()
        .function_name(&services.config.sync_function_name)
        .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
        .payload(aws_sdk_lambda::primitives::Blob::new(payload.to_string()))
        .send()
        .within_deadline()
        .await;
    match sent {
        Ok(Ok(_)) => Ok(run_id),
        failed => {
            let reason = match failed {
                Ok(Err(e)) => aws_sdk_lambda::error::DisplayErrorContext(&e).to_string(),
                _ => "no answer before the invocation's deadline".into(),
            };
            tracing::error!(error = %reason, "could not start the bulk sync");
            Err(Error::Unavailable {
                code: "sync_unavailable",
                detail: "the bulk-sync function could not be started".into(),
            })
        }
    }
}

pub async fn sync_run(
    services: &Services,
    actor: Actor<'_>,
    run_id: &str,
) -> Result<crate::store::SyncRun, Error> {
    services
        .policy
        .allow_route(actor.principal, Action::ControlSync)?;
    services.store.get_run(run_id).await?.ok_or(Error::NotFound)
}

/// Last run, last success, users synced and failure rate over 24 h, and the drift the last full
/// run found (users only in Keycloak, users only local).
pub async fn sync_status(services: &Services, actor: Actor<'_>) -> Result<Value, Error> {
    services
        .policy
        .allow_route(actor.principal, Action::ControlSync)?;
    let state = services.store.sync_state().await?;
    let runs = services.store.recent_runs(500).await?;
    let since = now_ms() - 24 * 3600 * 1000;
    let day: Vec<_> = runs
        .iter()
        .filter(|r| r.started_at >= since && r.status != "running")
        .collect();
    let counted = |r: &crate::store::SyncRun, k: &str| r.counts.get(k).copied().unwrap_or(0);
    let synced: u64 = day
        .iter()
        .map(|r| counted(r, "created") + counted(r, "updated") + counted(r, "reactivated"))
        .sum();
    let failed = day.iter().filter(|r| r.status == "failed").count();
    let last_full = runs
        .iter()
        .find(|r| r.mode.ends_with("full") && r.status != "running" && r.status != "skipped");
    let iso = |ms: Option<i64>| ms.map(crate::users::iso8601);
    Ok(json!({
        "lastRun": runs.first(),
        "lastSuccessAt": iso(state.last_success_at),
        "lastFullRunAt": iso(state.last_full_run_at),
        "eventCursor": iso(state.event_cursor_ms),
        "usersSyncedLast24h": synced,
        "runsLast24h": day.len(),
        "failureRateLast24h": if day.is_empty() { 0.0 } else { failed as f64 / day.len() as f64 },
        "usersOnlyInKeycloak": last_full.map(|r| counted(r, "only_in_keycloak")),
        "usersOnlyLocal": last_full.map(|r| counted(r, "only_local")),
        "asOfRunId": last_full.map(|r| r.run_id.clone()),
    }))
}
