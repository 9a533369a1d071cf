//! The queue's consumer: each message's user applied through the per-user sync path, a failed
//! one postponed with backoff and retried by the queue.

use crate::base::deadline::Bounded;
use crate::error::{Error, ProblemCode};
use crate::features::sync::UserChange;

/// One message of the queue as the consumer receives it.
#[derive(Clone, Debug)]
pub struct Queued {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    /// The FIFO message group (the user id).
    pub group: Option<String>,
    /// How many times the message has been received, this time included.
    pub receive_count: u32,
}

/// Exponential backoff for a failed message: its visibility is set to `base × 2^(receives - 1)`
/// (at most 15 minutes), so a failing user is retried later rather than at once; the queue's
/// redrive policy moves it to the dead-letter queue after its last attempt.
pub struct Backoff {
    /// SQS's API (`aws_api::SQS`).
    sqs: crate::outside::aws_api::AwsApi,
    queue_url: String,
    base_seconds: u32,
}

impl Backoff {
    /// From `HOOK_QUEUE_URL` and `HOOK_RETRY_BASE_SECONDS` (`config::HookConfig`); none
    /// without a queue.
    pub async fn from_env() -> Result<Option<Self>, crate::base::config::ConfigError> {
        let c = crate::base::config::HookConfig::from_env()?;
        let Some(queue_url) = c.queue_url else {
            return Ok(None);
        };
        let aws = crate::services::aws_setup().await;
        Ok(Some(Backoff {
            sqs: aws.api(&crate::outside::aws_api::SQS),
            queue_url,
            base_seconds: c.retry_base_s,
        }))
    }

    pub fn delay_seconds(&self, receive_count: u32) -> i32 {
        let exponent = receive_count.saturating_sub(1).min(16);
        (u64::from(self.base_seconds) << exponent).min(900) as i32
    }

    async fn postpone(&self, m: &Queued) {
        let seconds = self.delay_seconds(m.receive_count);
        let input = serde_json::json!({
            "QueueUrl": self.queue_url,
            "ReceiptHandle": m.receipt_handle,
            "VisibilityTimeout": seconds,
        });
        let result = self
            .sqs
            .call("ChangeMessageVisibility", &input)
            .within_deadline()
            .await;
        if !matches!(result, Ok(Ok(_))) {
            // The queue's own visibility timeout then decides when it comes back.
            tracing::warn!(message_id = %m.message_id, "could not postpone the failed message");
        }
    }
}

/// Apply a batch in order; answers the ids of the messages that failed (the event source
/// deletes the others). A user whose message failed keeps the rest of their messages in this
/// batch back too, so their changes are never applied out of order.
pub async fn consume(
    services: &crate::services::Services,
    backoff: Option<&Backoff>,
    messages: Vec<Queued>,
) -> Vec<String> {
    let mut failed = Vec::new();
    let mut held_groups = std::collections::HashSet::new();
    for m in messages {
        if m.group.as_ref().is_some_and(|g| held_groups.contains(g)) {
            failed.push(m.message_id);
            continue;
        }
        let outcome = match serde_json::from_str::<UserChange>(&m.body) {
            Ok(change) => crate::features::sync::apply_user_change(services, &change)
                .await
                .map(|o| (change, o)),
            Err(e) => Err(Error::BadRequest {
                code: ProblemCode::InvalidMessage,
                detail: format!("not a queued user change: {e}"),
            }),
        };
        match outcome {
            Ok((change, outcome)) => tracing::info!(
                message_id = %m.message_id, event_id = %change.event_id,
                user_id = %change.user_id, event = %change.kind, outcome = ?outcome,
                "webhook change applied"
            ),
            Err(e) => {
                tracing::warn!(
                    message_id = %m.message_id, receive_count = m.receive_count, error = %e,
                    "webhook change not applied; it will be retried"
                );
                if let Some(b) = backoff {
                    b.postpone(&m).await;
                }
                held_groups.extend(m.group.clone());
                failed.push(m.message_id);
            }
        }
    }
    failed
}
