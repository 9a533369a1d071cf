//! Full and incremental reconcile of Keycloak users into the store, started by EventBridge
//! Scheduler (`{"mode": "full"}`) or by `POST /admin/sync` (`{mode, dryRun, force, runId}`).

mod handler;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let services = std::sync::Arc::new(user_sync::services::Services::from_env().await?);
    services.warm_up().await;
    lambda_runtime::run(lambda_runtime::service_fn(move |event| {
        handler::handle(services.clone(), event)
    }))
    .await
}
