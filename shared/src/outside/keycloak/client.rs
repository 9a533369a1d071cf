//! The HTTP side of the Keycloak client: one connection pool, timeouts, bounded retries with
//! jittered backoff (honouring `Retry-After`), and the URLs of the realm's endpoints. The OIDC
//! endpoints are in `tokens`, the admin API in `admin`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;

use super::credentials::{ClientCredentials, TokenCache};
use super::error::KeycloakError;
use crate::base::deadline::Bounded;

/// Retry tuning. The defaults suit a Lambda: a few quick retries, never minutes of waiting.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A longer `Retry-After` is not waited out: the caller gets `RateLimited` instead.
    pub max_retry_after: Duration,
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// Full jitter: a random wait up to `base * 2^attempt`, capped.
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_delay);
        ceiling.mul_f64(fastrand::f64())
    }
}

/// Whether a request may be sent again when its outcome is unknown (timeout, 5xx).
/// Requests that were certainly not processed (connection refused, 429) are always retried.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(super) enum Safety {
    Idempotent,
    NotIdempotent,
}

pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) location: Option<String>,
    pub(super) body: Vec<u8>,
}

/// A call the invocation's deadline cut short.
fn out_of_time() -> KeycloakError {
    KeycloakError::Unavailable {
        reason: "no answer before the invocation's deadline".into(),
    }
}

impl Reply {
    /// The answer's status, `Location` and body, the body read within the deadline.
    async fn read(resp: reqwest::Response) -> Result<Reply, KeycloakError> {
        let status = resp.status();
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp
            .bytes()
            .within_deadline()
            .await
            .map_err(|_| out_of_time())?
            .map_err(|e| KeycloakError::Unavailable {
                reason: e.without_url().to_string(),
            })?
            .to_vec();
        Ok(Reply {
            status,
            location,
            body,
        })
    }
}

/// Two clients with two secrets (README "Keycloak setup"): the **login** client makes the grants
/// of end users (password, refresh, logout) and has no service account; the **service** client's
/// service account holds the realm-management roles the admin API needs. A function is given only
/// the client it uses, so a public auth function cannot reach the admin API whatever its bug.
pub struct KeycloakClient {
    pub(super) http: reqwest::Client,
    pub(super) base_url: String,
    pub(super) realm: String,
    pub(super) login: Option<ClientCredentials>,
    pub(super) service: Option<ClientCredentials>,
    pub(super) retry: RetryPolicy,
    pub(super) sa_token: TokenCache,
    /// The ids of the realm's service-account users and when they were read.
    pub(super) service_accounts: tokio::sync::Mutex<Option<(Instant, Arc<HashSet<String>>)>>,
    /// Requests sent to Keycloak (every attempt), for a sync run's cost.
    pub(super) requests: std::sync::atomic::AtomicU64,
}

pub(super) fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, KeycloakError> {
    serde_json::from_slice(body)
        .map_err(|e| KeycloakError::Protocol(format!("unexpected body: {e}")))
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Path-segment encoding for anything that travels in a URL path (ids, role names): an id from a
/// request can never reach another resource of the admin API.
pub(super) fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl KeycloakClient {
    /// A client with neither Keycloak client yet: add them with `with_login_client` and
    /// `with_service_client`. A call needing a client that is not there is `NotConfigured`.
    pub fn new(base_url: &str, realm: &str, retry: RetryPolicy) -> Result<Self, KeycloakError> {
        let http = reqwest::Client::builder()
            .timeout(retry.request_timeout)
            .connect_timeout(Duration::from_secs(3))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent("keycloak-user-sync")
            .build()
            .map_err(|e| KeycloakError::Protocol(format!("HTTP client: {e}")))?;
        Ok(KeycloakClient {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            realm: realm.to_owned(),
            login: None,
            service: None,
            retry,
            sa_token: TokenCache::default(),
            service_accounts: Default::default(),
            requests: Default::default(),
        })
    }

    /// The client for end users' grants (password, refresh, logout).
    pub fn with_login_client(mut self, client: ClientCredentials) -> Self {
        self.login = Some(client);
        self
    }

    /// The client whose service account calls the admin API.
    pub fn with_service_client(mut self, client: ClientCredentials) -> Self {
        self.service = Some(client);
        self
    }

    pub(super) fn login_client(&self) -> Result<&ClientCredentials, KeycloakError> {
        self.login
            .as_ref()
            .ok_or(KeycloakError::NotConfigured("login client"))
    }

    pub(super) fn service_client(&self) -> Result<&ClientCredentials, KeycloakError> {
        self.service
            .as_ref()
            .ok_or(KeycloakError::NotConfigured("service client"))
    }

    pub fn issuer(&self) -> String {
        format!("{}/realms/{}", self.base_url, self.realm)
    }

    pub(super) fn oidc_url(&self, endpoint: &str) -> String {
        format!("{}/protocol/openid-connect/{endpoint}", self.issuer())
    }

    pub(super) fn admin_url(&self, path: &str) -> String {
        format!("{}/admin/realms/{}{path}", self.base_url, self.realm)
    }

    /// Send with retries. Returns any answer that is not a retryable failure. Every attempt and
    /// every wait between attempts fits in the invocation's remaining time; past it the call is
    /// `Unavailable`, so the function answers (and compensates) before the platform cuts it off.
    pub(super) async fn send(
        &self,
        safety: Safety,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Reply, KeycloakError> {
        // Wait before the next attempt, if the deadline leaves room for the wait and an attempt.
        let pause = |delay: Duration| async move {
            if crate::base::deadline::budget().is_some_and(|b| b <= delay) {
                return false;
            }
            tokio::time::sleep(delay).await;
            true
        };
        let mut attempt = 0;
        loop {
            let last = attempt >= self.retry.max_retries;
            self.requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let sent = build()
                .header("accept", "application/json")
                .send()
                .within_deadline()
                .await
                .map_err(|_| out_of_time())?;
            match sent {
                Err(e) => {
                    let unsent = e.is_connect();
                    let retryable = unsent
                        || (safety == Safety::Idempotent && (e.is_timeout() || e.is_request()));
                    let reason = e.without_url().to_string();
                    if retryable && !last {
                        tracing::warn!(attempt, error = %reason, "Keycloak request failed; retrying");
                        if pause(self.retry.backoff(attempt)).await {
                            attempt += 1;
                            continue;
                        }
                    }
                    return Err(KeycloakError::Unavailable { reason });
                }
                Ok(resp) => {
                    let status = resp.status();
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        let wait = retry_after(resp.headers());
                        let delay = wait
                            .map(Duration::from_secs)
                            .unwrap_or_else(|| self.retry.backoff(attempt));
                        if !last && delay <= self.retry.max_retry_after {
                            tracing::warn!(attempt, ?delay, "Keycloak rate limited; waiting");
                            if pause(delay).await {
                                attempt += 1;
                                continue;
                            }
                        }
                        return Err(KeycloakError::RateLimited { retry_after: wait });
                    }
                    let transient = matches!(status.as_u16(), 500 | 502 | 503 | 504);
                    if transient {
                        if safety == Safety::Idempotent && !last {
                            tracing::warn!(
                                attempt,
                                status = status.as_u16(),
                                "Keycloak error; retrying"
                            );
                            if pause(self.retry.backoff(attempt)).await {
                                attempt += 1;
                                continue;
                            }
                        }
                        return Err(KeycloakError::Unavailable {
                            reason: format!("HTTP {}", status.as_u16()),
                        });
                    }
                    return Reply::read(resp).await;
                }
            }
        }
    }

    /// Requests sent to Keycloak by this client so far (retries included).
    pub fn requests_sent(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_and_capped() {
        let p = RetryPolicy::default();
        for attempt in 0..10 {
            let d = p.backoff(attempt);
            assert!(d <= p.max_delay);
            assert!(d <= p.base_delay * 2u32.pow(attempt));
        }
    }

    #[test]
    fn role_names_are_path_encoded() {
        assert_eq!(encode("default-roles-demo"), "default-roles-demo");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }
}
