use std::sync::Arc;

use lambda_runtime::LambdaEvent;
use serde_json::Value;
use user_sync::features::sync::{self, SyncRequest};
use user_sync::services::Services;

/// Run one sync; the answer (for synchronous invokes) is the run record.
pub async fn handle(
    services: Arc<Services>,
    event: LambdaEvent<Value>,
) -> Result<Value, lambda_runtime::Error> {
    let mut request: SyncRequest = serde_json::from_value(event.payload)
        .map_err(|e| format!("expected {{\"mode\": \"full\" | \"incremental\", ...}}: {e}"))?;
    let deadline = user_sync::base::deadline::of_invocation(event.context.deadline, None);
    request.deadline_ms = match deadline {
        Some(d) => {
            let now = user_sync::base::clock::now_ms();
            let left = d
                .saturating_duration_since(std::time::Instant::now())
                .as_millis() as i64;
            Some(sync::stop_writing_at(now + left, now))
        }
        None => {
            tracing::warn!("no usable invocation deadline: running without a time budget");
            None
        }
    };
    let run = user_sync::base::deadline::within(deadline, sync::run(&services, request)).await?;
    Ok(serde_json::to_value(run)?)
}
