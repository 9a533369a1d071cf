//! Near-real-time sync from Keycloak webhooks (README "Webhooks").
//!
//! `POST /hooks/keycloak` checks the delivery's signature, turns it into a [`UserChange`] through
//! the format's adapter, and puts it on a FIFO queue (deduplicated by the event's id, grouped by
//! user so one user's changes are applied in order); the consumer re-reads each named user from
//! Keycloak and applies it through the per-user sync path (`sync::apply_user_change`). The
//! payload's representation is never applied: it only lets the consumer recognise an echo of this
//! project's own write.

use std::sync::Arc;

use aws_lc_rs::{digest, hmac};
use serde::{Deserialize, Serialize};

use crate::deadline::Bounded;
use crate::error::Error;
use crate::keycloak::{AdminEvent, AuthDetails};
use crate::secrets::{ClientSecretCache, DEFAULT_TTL};
pub use crate::sync::UserChange;

/// Largest delivery accepted (a user representation with attributes fits many times over).
pub const MAX_BODY: usize = 64 * 1024;

/// A webhook format: the body of one delivery to the change it means for a user, if any.
pub trait EventFormat {
    /// `Ok(None)`: a well-formed event that does not concern a user's synced fields (a login, a
    /// client change): acknowledged and dropped.
    fn user_change(&self, body: &[u8]) -> Result<Option<UserChange>, Error>;
}

/// `X-Keycloak-Signature`: the lowercase hex HMAC-SHA256 of the raw body with the shared
/// secret (RFC 2104), as the Phase Two extension signs. Compared in constant time.
pub fn signature_valid(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(tag) = header.and_then(|h| hex::decode(h.trim()).ok()) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::verify(&key, body, &tag).is_ok()
}

/// The signature the extension would send (the emulator's and the tests' side).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hex::encode(hmac::sign(&key, body).as_ref())
}

/// The SQS deduplication id of an event id: at most 128 characters of a restricted alphabet,
/// so a digest of it.
pub fn deduplication_id(event_id: &str) -> String {
    hex::encode(digest::digest(&digest::SHA256, event_id.as_bytes()).as_ref())
}

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
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    store: crate::store::Store,
    max_age_ms: i64,
    format: Arc<dyn EventFormat + Send + Sync>,
}

/// How often a failed signature may make the hook read the secret again.
const REFRESH_INTERVAL_MS: i64 = 60_000;
/// How old a delivered event may be by default: Phase Two's extension retries a failed delivery
/// with backoff for about a quarter of an hour; a margin on top.
pub const DEFAULT_MAX_EVENT_AGE_S: i64 = crate::config::DEFAULT_HOOK_MAX_EVENT_AGE_S;
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
    pub async fn from_env() -> Result<Self, crate::config::ConfigError> {
        use crate::config::HookConfig;
        let c = HookConfig::from_env()?;
        let secret_id = HookConfig::required(&c.secret_id, "HOOK_SECRET_ID")?;
        let queue_url = HookConfig::required(&c.queue_url, "HOOK_QUEUE_URL")?;
        let table = HookConfig::required(&c.table_name, "TABLE_NAME")?;
        let max_age_s = c.max_event_age_s;
        let (aws, recorder) = crate::services::aws_setup().await;
        let dynamodb = crate::services::sdk_client!(aws_sdk_dynamodb, &aws, &recorder);
        Ok(Self::new(
            crate::services::sdk_client!(aws_sdk_secretsmanager, &aws, &recorder),
            &secret_id,
            crate::services::sdk_client!(aws_sdk_sqs, &aws, &recorder),
            &queue_url,
            crate::store::Store::new(dynamodb, &table, b"hook"),
        )
        .max_event_age(max_age_s))
    }

    pub fn new(
        secretsmanager: aws_sdk_secretsmanager::Client,
        secret_id: &str,
        sqs: aws_sdk_sqs::Client,
        queue_url: &str,
        store: crate::store::Store,
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
        let now = crate::clock::now_ms();
        if change.time < now - self.max_age_ms || change.time > now + MAX_EVENT_LEAD_MS {
            return Err(Error::BadRequest {
                code: "stale_event",
                detail: "the event's time is outside the window this hook accepts".into(),
            });
        }
        let dedup = deduplication_id(&change.event_id);
        // Remembered until no delivery of it could still be fresh.
        let remember_until_s = (change.time + self.max_age_ms + MAX_EVENT_LEAD_MS) / 1000;
        if !self.store.take_event(&dedup, remember_until_s).await? {
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
        let valid =
            |s: &crate::secrets::Secret| signature_valid(s.expose().as_bytes(), body, signature);
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
        valid: &impl Fn(&crate::secrets::Secret) -> bool,
    ) -> Result<bool, Error> {
        use std::sync::atomic::Ordering;
        let now = crate::clock::now_ms();
        if now < self.no_previous_until.load(Ordering::Relaxed) {
            return Ok(false);
        }
        match self.previous.get().await {
            Ok(previous) => Ok(valid(&previous)),
            Err(crate::secrets::SecretError::NoSuchVersion { .. }) => {
                self.no_previous_until
                    .store(now + DEFAULT_TTL.as_millis() as i64, Ordering::Relaxed);
                Ok(false)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn enqueue(&self, change: &UserChange, dedup: &str) -> Result<(), Error> {
        let message = serde_json::to_string(change).map_err(|e| Error::Internal(e.to_string()))?;
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(message)
            // One user's changes in order; users in parallel. The queue drops a redelivery within
            // its five-minute window too.
            .message_group_id(&change.user_id)
            .message_deduplication_id(dedup)
            .send()
            .within_deadline()
            .await
            .map_err(|_| Error::Unavailable {
                code: "queue_unavailable",
                detail: "the queue did not answer in time".into(),
            })?
            .map_err(|e| Error::Unavailable {
                code: "queue_unavailable",
                detail: format!(
                    "event not queued: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(&e)
                ),
            })?;
        Ok(())
    }

    /// Whether a failed signature may read the secret again now (a rotation is picked up within
    /// a minute); claims the minute if so.
    fn may_refresh(&self) -> bool {
        use std::sync::atomic::Ordering;
        let now = crate::clock::now_ms();
        let last = self.last_refresh.load(Ordering::Relaxed);
        now - last >= REFRESH_INTERVAL_MS
            && self
                .last_refresh
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

fn unavailable(e: crate::secrets::SecretError) -> Error {
    Error::Unavailable {
        code: "secret_unavailable",
        detail: e.to_string(),
    }
}

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
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    base_seconds: u32,
}

impl Backoff {
    /// From `HOOK_QUEUE_URL` and `HOOK_RETRY_BASE_SECONDS` (`config::HookConfig`); none
    /// without a queue.
    pub async fn from_env() -> Result<Option<Self>, crate::config::ConfigError> {
        let c = crate::config::HookConfig::from_env()?;
        let Some(queue_url) = c.queue_url else {
            return Ok(None);
        };
        let (aws, recorder) = crate::services::aws_setup().await;
        Ok(Some(Backoff {
            sqs: crate::services::sdk_client!(aws_sdk_sqs, &aws, &recorder),
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
        let result = self
            .sqs
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(&m.receipt_handle)
            .visibility_timeout(seconds)
            .send()
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
            Ok(change) => crate::sync::apply_user_change(services, &change)
                .await
                .map(|o| (change, o)),
            Err(e) => Err(Error::BadRequest {
                code: "invalid_message",
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

/// The webhook format of Phase Two's `keycloak-events` extension (`ext-event-webhook`): one JSON
/// event per delivery, admin and user events unified, `type` prefixed `admin.` or `access.`.
pub struct PhaseTwo;

/// The unified event, as far as a user's synced fields care.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PhaseTwoEvent {
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    time: i64,
    #[serde(default)]
    auth_details: Option<PhaseTwoAuth>,
    #[serde(default)]
    resource_type: Option<String>,
    #[serde(default)]
    operation_type: Option<String>,
    #[serde(default)]
    resource_path: Option<String>,
    #[serde(default)]
    representation: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PhaseTwoAuth {
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
}

/// Admin resources whose events change a user's synced fields (the resource path names the user).
const ADMIN_RESOURCES: [&str; 3] = ["USER", "REALM_ROLE_MAPPING", "GROUP_MEMBERSHIP"];

/// User (login) events that change the user's own synced fields; logins, logouts and token
/// events change nothing the store holds.
const ACCESS_TYPES: [&str; 5] = [
    "REGISTER",
    "UPDATE_PROFILE",
    "UPDATE_EMAIL",
    "VERIFY_EMAIL",
    "DELETE_ACCOUNT",
];

impl EventFormat for PhaseTwo {
    fn user_change(&self, body: &[u8]) -> Result<Option<UserChange>, Error> {
        let e: PhaseTwoEvent = serde_json::from_slice(body).map_err(|err| Error::BadRequest {
            code: "invalid_event",
            detail: format!("not a keycloak-events webhook event: {err}"),
        })?;
        // The extension sets `uid` per delivery (kept across its retries); `id` where the
        // server has one; failing both, the body itself identifies the delivery.
        let event_id = e
            .uid
            .clone()
            .or(e.id.clone())
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| deduplication_id(&String::from_utf8_lossy(body)));
        let author = e.auth_details.as_ref();
        if let Some(kind) = e.kind.strip_prefix("admin.") {
            let resource = e.resource_type.clone().unwrap_or_default();
            if !ADMIN_RESOURCES.contains(&resource.as_str()) {
                return Ok(None);
            }
            let admin = AdminEvent {
                id: Some(event_id.clone()),
                time: e.time,
                operation_type: e.operation_type.clone().unwrap_or_default(),
                resource_type: resource,
                resource_path: e.resource_path.clone().unwrap_or_default(),
                auth_details: author.map(|a| AuthDetails {
                    user_id: a.user_id.clone(),
                    client_id: a.client_id.clone(),
                }),
                representation: e.representation.clone(),
            };
            let Some(user_id) = admin.user_id().map(str::to_owned) else {
                return Ok(None);
            };
            return Ok(Some(UserChange {
                event_id,
                user_id,
                time: e.time,
                kind: format!("admin.{kind}"),
                admin: Some(admin),
            }));
        }
        if let Some(kind) = e.kind.strip_prefix("access.") {
            let user_id = author.and_then(|a| a.user_id.clone());
            return Ok(match user_id {
                Some(user_id) if ACCESS_TYPES.contains(&kind) && !user_id.is_empty() => {
                    Some(UserChange {
                        event_id,
                        user_id,
                        time: e.time,
                        kind: e.kind.clone(),
                        admin: None,
                    })
                }
                _ => None,
            });
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const USER: &str = "0a1b2c3d-4e5f-6789-abcd-ef0123456789";

    fn change(event: Value) -> Option<UserChange> {
        PhaseTwo.user_change(event.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn a_signature_is_the_hex_hmac_sha256_of_the_raw_body() {
        let body = br#"{"type":"admin.USER-UPDATE"}"#;
        let good = sign(b"s3cret", body);
        assert_eq!(good.len(), 64);
        assert!(signature_valid(b"s3cret", body, Some(&good)));
        assert!(signature_valid(b"s3cret", body, Some(&good.to_uppercase())));
        assert!(!signature_valid(b"other", body, Some(&good)));
        assert!(!signature_valid(b"s3cret", b"{}", Some(&good)));
        assert!(!signature_valid(b"s3cret", body, None));
        assert!(!signature_valid(b"s3cret", body, Some("zz")));
        assert!(!signature_valid(b"s3cret", body, Some("")));
    }

    #[test]
    fn an_admin_user_update_names_the_user_and_keeps_its_author_for_the_echo_check() {
        let c = change(json!({
            "uid": "e-1", "type": "admin.USER-UPDATE", "time": 1000, "realmId": "demo",
            "resourceType": "USER", "operationType": "UPDATE", "resourcePath": format!("users/{USER}"),
            "representation": "{\"firstName\":\"A\"}",
            "authDetails": {"realmId": "master", "clientId": "c-uuid", "userId": "sa-uuid", "ipAddress": "1.2.3.4"},
            "details": {"userId": USER}
        }))
        .unwrap();
        assert_eq!(
            (c.event_id.as_str(), c.user_id.as_str(), c.time),
            ("e-1", USER, 1000)
        );
        let admin = c.admin.unwrap();
        assert_eq!(
            admin.auth_details.unwrap().user_id.as_deref(),
            Some("sa-uuid")
        );
        assert_eq!(
            admin.representation.as_deref(),
            Some("{\"firstName\":\"A\"}")
        );
    }

    #[test]
    fn role_mapping_and_group_membership_events_name_the_user_of_their_path() {
        for (resource, path) in [
            (
                "REALM_ROLE_MAPPING",
                format!("users/{USER}/role-mappings/realm"),
            ),
            ("GROUP_MEMBERSHIP", format!("users/{USER}/groups/g-1")),
        ] {
            let c = change(
                json!({"uid": "e", "type": format!("admin.{resource}-CREATE"),
                "resourceType": resource, "operationType": "CREATE", "resourcePath": path}),
            );
            assert_eq!(c.unwrap().user_id, USER, "{resource}");
        }
    }

    #[test]
    fn profile_changes_by_the_user_name_them_and_logins_are_dropped() {
        let profile = change(
            json!({"uid": "e", "type": "access.UPDATE_PROFILE", "time": 5,
            "authDetails": {"userId": USER, "clientId": "account"}}),
        );
        assert_eq!(profile.unwrap().user_id, USER);
        for dropped in [
            json!({"uid": "e", "type": "access.LOGIN", "authDetails": {"userId": USER}}),
            json!({"uid": "e", "type": "admin.CLIENT-UPDATE", "resourceType": "CLIENT", "resourcePath": "clients/x"}),
            json!({"uid": "e", "type": "admin.REALM_ROLE-UPDATE", "resourceType": "REALM_ROLE", "resourcePath": "roles/x"}),
            json!({"uid": "e", "type": "admin.USER-CREATE", "resourceType": "USER", "resourcePath": "users"}),
            json!({"uid": "e", "type": "system.ORG-CREATE"}),
        ] {
            assert_eq!(change(dropped.clone()), None, "{dropped}");
        }
    }

    #[test]
    fn an_event_without_uid_or_id_is_identified_by_its_body() {
        let event = json!({"type": "access.UPDATE_EMAIL", "authDetails": {"userId": USER}});
        let a = change(event.clone()).unwrap();
        let b = change(event).unwrap();
        assert_eq!(a.event_id, b.event_id);
        assert_eq!(a.event_id.len(), 64);
    }

    #[test]
    fn a_body_that_is_not_an_event_is_a_bad_request() {
        for body in [&b"not json"[..], br#"{"uid":"x"}"#, br#"[1,2]"#] {
            assert!(matches!(
                PhaseTwo.user_change(body),
                Err(Error::BadRequest { .. })
            ));
        }
    }

    #[test]
    fn failed_signatures_read_the_secret_again_at_most_once_a_minute() {
        let intake = Intake::new(
            aws_sdk_secretsmanager::Client::from_conf(
                aws_sdk_secretsmanager::Config::builder()
                    .behavior_version(aws_sdk_secretsmanager::config::BehaviorVersion::latest())
                    .build(),
            ),
            "secret",
            aws_sdk_sqs::Client::from_conf(
                aws_sdk_sqs::Config::builder()
                    .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
                    .build(),
            ),
            "queue",
            crate::store::Store::new(
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

    #[test]
    fn a_deduplication_id_fits_sqs() {
        let id = deduplication_id(&"x".repeat(500));
        assert!(id.len() <= 128 && id.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
