//! `POST /hooks/keycloak`: a delivery authenticated, judged by its age, and put on the queue.

use std::sync::Arc;

use serde::Serialize;

use crate::base::clock::EpochSecs;
use crate::base::deadline::Bounded;
use crate::error::{Error, ProblemCode};
use crate::features::sync::UserChange;
use crate::outside::aws_api::{AwsApi, SECRETS_MANAGER, SQS};
use crate::outside::secrets::{ClientSecretCache, DEFAULT_TTL};

use super::phase_two::{EventFormat, PhaseTwo};
use super::signature::{deduplication_id, signature_valid};

/// Largest delivery accepted (a user representation with attributes fits many times over).
pub const MAX_BODY: usize = 64 * 1024;

/// The hook function's state, built once per cold start: the webhook secret (Secrets Manager,
/// `{"webhook_secret": "..."}`, `HOOK_SECRET_ID`: its current version and the one a rotation
/// replaced), the queue (`HOOK_QUEUE_URL`), the store (the events already taken) and how old a
/// delivered event may be (`HOOK_MAX_EVENT_AGE_SECONDS`).
#[derive(Clone)]
pub struct Intake {
    secret: Arc<ClientSecretCache>,
    /// `AWSPREVIOUS`: during a rotation the sender may still sign with the replaced secret.
    previous: Arc<ClientSecretCache>,
    /// Until when (epoch ms) the secret is known to have no previous version.
    no_previous_until: Arc<std::sync::atomic::AtomicI64>,
    /// When the secret was last read again because a signature failed (epoch ms): at most once
    /// a minute, so forged deliveries cannot turn into a Secrets Manager call each.
    last_refresh: Arc<std::sync::atomic::AtomicI64>,
    /// SQS's API (`aws_api::SQS`).
    sqs: AwsApi,
    queue_url: String,
    store: crate::outside::store::Store,
    max_age_ms: i64,
    format: Arc<dyn EventFormat + Send + Sync>,
}

/// How often a failed signature may make the hook read the secret again.
const REFRESH_INTERVAL_MS: i64 = 60_000;
/// How old a delivered event may be by default: Phase Two's extension retries a failed delivery
/// with backoff for about a quarter of an hour; a margin on top.
pub const DEFAULT_MAX_EVENT_AGE_S: i64 = crate::base::config::DEFAULT_HOOK_MAX_EVENT_AGE_S;
/// How far ahead of this clock a sender's event time may be (its clock runs ahead).
pub const MAX_EVENT_LEAD_MS: i64 = 5 * 60 * 1000;

/// What the hook did with a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptStatus {
    /// Put on the queue for the consumer.
    Queued,
    /// An event that does not concern a user.
    Ignored,
    /// An event taken before (a replay or a redelivery): dropped.
    Duplicate,
}

/// The answer to a delivery.
#[derive(Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub status: ReceiptStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
}

impl Intake {
    /// From the environment (`config::HookConfig`): `HOOK_SECRET_ID`, `HOOK_QUEUE_URL`,
    /// `TABLE_NAME`, `HOOK_MAX_EVENT_AGE_SECONDS`.
    pub async fn from_env() -> Result<Self, crate::base::config::ConfigError> {
        use crate::base::config::HookConfig;
        let c = HookConfig::from_env()?;
        let secret_id = HookConfig::required(&c.secret_id, "HOOK_SECRET_ID")?;
        let queue_url = HookConfig::required(&c.queue_url, "HOOK_QUEUE_URL")?;
        let table = HookConfig::required(&c.table_name, "TABLE_NAME")?;
        let max_age_s = c.max_event_age_s;
        let aws = crate::services::aws_setup().await;
        Ok(Self::new(
            aws.api(&SECRETS_MANAGER),
            &secret_id,
            aws.api(&SQS),
            &queue_url,
            crate::outside::store::Store::new(aws.dynamodb(), &table, b"hook"),
        )
        .max_event_age(max_age_s))
    }

    /// Over Secrets Manager's and SQS's APIs (`aws_api::SECRETS_MANAGER`, `aws_api::SQS`).
    pub fn new(
        secretsmanager: AwsApi,
        secret_id: &str,
        sqs: AwsApi,
        queue_url: &str,
        store: crate::outside::store::Store,
    ) -> Self {
        let cache = |sm| ClientSecretCache::with_key(sm, secret_id, "webhook_secret", DEFAULT_TTL);
        Intake {
            secret: Arc::new(cache(secretsmanager.clone())),
            previous: Arc::new(cache(secretsmanager).at_stage("AWSPREVIOUS")),
            no_previous_until: Arc::default(),
            last_refresh: Arc::default(),
            sqs,
            queue_url: queue_url.to_owned(),
            store,
            max_age_ms: DEFAULT_MAX_EVENT_AGE_S * 1000,
            format: Arc::new(PhaseTwo),
        }
    }

    /// How old (seconds) a delivered event may be.
    pub fn max_event_age(mut self, seconds: i64) -> Self {
        self.max_age_ms = seconds * 1000;
        self
    }

    /// Read the secret during INIT, so the first delivery does not wait for it.
    pub async fn warm_up(&self) {
        if let Err(e) = self.secret.get().await {
            tracing::warn!(error = %e, "webhook secret not read during INIT");
        }
    }

    /// One delivery: its signature checked (current secret, then the one a rotation replaced;
    /// read again once a minute at most if both fail), its event's time within the sender's
    /// retry horizon, then taken once (a replay of a taken event is acknowledged and dropped)
    /// and queued if it names a user.
    pub async fn receive(&self, signature: Option<&str>, body: &[u8]) -> Result<Receipt, Error> {
        if body.len() > MAX_BODY {
            return Err(Error::PayloadTooLarge { limit: MAX_BODY });
        }
        self.authenticate(signature, body).await?;
        let Some(change) = self.format.user_change(body)? else {
            return Ok(Receipt {
                status: ReceiptStatus::Ignored,
                event_id: None,
            });
        };
        let now = crate::base::clock::now_ms();
        if change.time < now - self.max_age_ms || change.time > now + MAX_EVENT_LEAD_MS {
            return Err(Error::BadRequest {
                code: ProblemCode::StaleEvent,
                detail: "the event's time is outside the window this hook accepts".into(),
            });
        }
        let dedup = deduplication_id(&change.event_id);
        // Remembered until no delivery of it could still be fresh.
        let remember_until = EpochSecs::of_ms(change.time + self.max_age_ms + MAX_EVENT_LEAD_MS);
        if !self.store.take_event(&dedup, remember_until).await? {
            return Ok(Receipt {
                status: ReceiptStatus::Duplicate,
                event_id: Some(change.event_id),
            });
        }
        if let Err(e) = self.enqueue(&change, &dedup).await {
            // Not queued: the sender's retry must be taken, not dropped as a replay.
            if let Err(forget) = self.store.forget_event(&dedup).await {
                tracing::error!(error = %forget, event_id = %change.event_id,
                    "an event not queued stays marked as taken; its retries are dropped");
            }
            return Err(e);
        }
        Ok(Receipt {
            status: ReceiptStatus::Queued,
            event_id: Some(change.event_id),
        })
    }

    async fn authenticate(&self, signature: Option<&str>, body: &[u8]) -> Result<(), Error> {
        let valid = |s: &crate::outside::secrets::Secret| {
            signature_valid(s.expose().as_bytes(), body, signature)
        };
        let secret = self.secret.get().await.map_err(unavailable)?;
        if valid(&secret) || self.previous_matches(&valid).await? {
            return Ok(());
        }
        if !self.may_refresh() {
            return Err(Error::Unauthenticated);
        }
        // A rotation moves both versions: the previous one is read again when next needed.
        self.no_previous_until
            .store(0, std::sync::atomic::Ordering::Relaxed);
        self.previous.forget().await;
        let fresh = self.secret.refresh(&secret).await.map_err(unavailable)?;
        if fresh != secret && valid(&fresh) {
            return Ok(());
        }
        Err(Error::Unauthenticated)
    }

    /// Whether the secret's previous version (if it has one) signed the delivery.
    async fn previous_matches(
        &self,
        valid: &impl Fn(&crate::outside::secrets::Secret) -> bool,
    ) -> Result<bool, Error> {
        use std::sync::atomic::Ordering;
        let now = crate::base::clock::now_ms();
        if now < self.no_previous_until.load(Ordering::Relaxed) {
            return Ok(false);
        }
        match self.previous.get().await {
            Ok(previous) => Ok(valid(&previous)),
            Err(crate::outside::secrets::SecretError::NoSuchVersion { .. }) => {
                self.no_previous_until
                    .store(now + DEFAULT_TTL.as_millis() as i64, Ordering::Relaxed);
                Ok(false)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn enqueue(&self, change: &UserChange, dedup: &str) -> Result<(), Error> {
        let message = serde_json::to_string(change).map_err(|e| Error::Internal(e.to_string()))?;
        // One user's changes in order (the group); users in parallel. The queue drops a
        // redelivery within its five-minute window too (the deduplication id).
        let input = serde_json::json!({
            "QueueUrl": self.queue_url,
            "MessageBody": message,
            "MessageGroupId": change.user_id,
            "MessageDeduplicationId": dedup,
        });
        self.sqs
            .call("SendMessage", &input)
            .within_deadline()
            .await
            .map_err(|_| Error::Unavailable {
                code: ProblemCode::QueueUnavailable,
                detail: "the queue did not answer in time".into(),
            })?
            .map_err(|e| Error::Unavailable {
                code: ProblemCode::QueueUnavailable,
                detail: format!("event not queued: {e}"),
            })?;
        Ok(())
    }

    /// Whether a failed signature may read the secret again now (a rotation is picked up within
    /// a minute); claims the minute if so.
    fn may_refresh(&self) -> bool {
        use std::sync::atomic::Ordering;
        let now = crate::base::clock::now_ms();
        let last = self.last_refresh.load(Ordering::Relaxed);
        now - last >= REFRESH_INTERVAL_MS
            && self
                .last_refresh
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

fn unavailable(e: crate::outside::secrets::SecretError) -> Error {
    Error::Unavailable {
        code: ProblemCode::SecretUnavailable,
        detail: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_signatures_read_the_secret_again_at_most_once_a_minute() {
        let nowhere = |service| {
            AwsApi::new(
                service,
                "http://127.0.0.1:9",
                "us-east-1",
                aws_credential_types::provider::SharedCredentialsProvider::new(
                    aws_credential_types::Credentials::new("test", "test", None, None, "test"),
                ),
            )
        };
        let intake = Intake::new(
            nowhere(&SECRETS_MANAGER),
            "secret",
            nowhere(&SQS),
            "queue",
            crate::outside::store::Store::new(
                aws_sdk_dynamodb::Client::from_conf(
                    aws_sdk_dynamodb::Config::builder()
                        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
                        .build(),
                ),
                "table",
                b"key",
            ),
        );
        assert!(intake.may_refresh());
        assert!(!intake.may_refresh(), "not again within the minute");
        intake
            .last_refresh
            .fetch_sub(REFRESH_INTERVAL_MS, std::sync::atomic::Ordering::Relaxed);
        assert!(intake.may_refresh(), "a minute later");
    }
}
