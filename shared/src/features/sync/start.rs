//! Starting a run: an asynchronous invoke of the bulk-sync function, within the calling
//! invocation's deadline. The admin API's `POST /admin/sync` and a run handing over to its
//! follow-up both start runs here.

use crate::base::deadline::Bounded;
use crate::services::Services;

use super::request::SyncRequest;

/// Invoke `function` asynchronously with `req`; answers why not if Lambda refused it or did not
/// answer before this invocation's deadline.
pub async fn start_run(
    services: &Services,
    function: &str,
    req: &SyncRequest,
) -> Result<(), String> {
    let payload = serde_json::to_string(req).map_err(|e| e.to_string())?;
    let sent = services
        .lambda
        .invoke_event(function, payload.into_bytes())
        .within_deadline()
        .await;
    match sent {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer before the invocation's deadline".into()),
    }
}
