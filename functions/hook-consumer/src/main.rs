//! The webhook queue's consumer (SQS event source, partial batch failures): each message names a
//! user; the user is read again from Keycloak and applied as the per-user sync applies it
//! (`user_sync::features::hooks::consume`). A failed message is postponed with exponential backoff and,
//! after the queue's last attempt, goes to the dead-letter queue.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, LambdaEvent};
use user_sync::features::hooks::{consume, Backoff, Queued};
use user_sync::services::Services;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let services = Arc::new(Services::from_env().await?);
    services.warm_up().await;
    let backoff = Arc::new(Backoff::from_env().await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let (services, backoff) = (services.clone(), backoff.clone());
        async move {
            let messages = event.payload.records.into_iter().map(|r| Queued {
                message_id: r.message_id.unwrap_or_default(),
                receipt_handle: r.receipt_handle.unwrap_or_default(),
                body: r.body.unwrap_or_default(),
                group: r.attributes.get("MessageGroupId").cloned(),
                receive_count: r
                    .attributes
                    .get("ApproximateReceiveCount")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1),
            });
            let failed = consume(&services, backoff.as_ref().as_ref(), messages.collect()).await;
            let mut response = SqsBatchResponse::default();
            response.batch_item_failures = failed
                .into_iter()
                .map(|id| {
                    let mut f = BatchItemFailure::default();
                    f.item_identifier = id;
                    f
                })
                .collect();
            Ok::<_, lambda_runtime::Error>(response)
        }
    }))
    .await
}
