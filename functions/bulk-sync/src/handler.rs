use std::sync::Arc;

use lambda_runtime::LambdaEvent;
use serde_json::Value;
use user_sync::services::Services;
use user_sync::sync::{self, SyncRequest};

/// Run one sync; the answer (for synchronous invokes) is the run record.
pub async fn handle(
    services: Arc<Services>,
    event: LambdaEvent<Value>,
) -> Result<Value, lambda_runtime::Error> {
    let mut request: SyncRequest = serde_json::from_value(event.payload)
        .map_err(|e| format!("expected {{\"mode\": \"full\" | \"incremental\", ...}}: {e}"))?;
    // Lambda always gives a deadline ahead; a local runner may not. Without one, no time budget.
    let (deadline, now) = (event.context.deadline as i64, user_sync::store::now_ms());
    request.deadline_ms = if deadline > now + 1_000 {
        Some(sync::stop_writing_at(deadline, now))
    } else {
        tracing::warn!(
            deadline,
            now,
            "no usable invocation deadline: running without a time budget"
        );
        None
    };
    let run = sync::run(&services, request).await?;
    Ok(serde_json::to_value(run)?)
}
