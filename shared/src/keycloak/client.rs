//! The HTTP side of the Keycloak client: one connection pool, timeouts, bounded retries with
//! jittered backoff (honouring `Retry-After`), the service-account token cache, and the client
//! secret with its rotation retry.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::error::{classify, Endpoint, KeycloakError};
use super::types::*;
use crate::deadline::Bounded;
use crate::secrets::{ClientSecretCache, Secret};

/// How long the list of service-account users is trusted: a client given service accounts
/// later is known within this.
pub const SERVICE_ACCOUNTS_TTL: Duration = Duration::from_secs(300);

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

/// A confidential client: its id and where its secret comes from.
pub struct ClientCredentials {
    pub client_id: String,
    pub secret: ClientSecret,
}

impl ClientCredentials {
    pub fn new(client_id: &str, secret: ClientSecret) -> Self {
        ClientCredentials {
            client_id: client_id.to_owned(),
            secret,
        }
    }
}

/// Where a client secret comes from.
pub enum ClientSecret {
    /// Secrets Manager, cached with a TTL; re-read on `unauthorized_client`.
    SecretsManager(Arc<ClientSecretCache>),
    /// A fixed value (tools and tests that have no Secrets Manager).
    Fixed(Secret),
}

impl ClientSecret {
    async fn get(&self) -> Result<Secret, KeycloakError> {
        match self {
            ClientSecret::SecretsManager(cache) => cache
                .get()
                .await
                .map_err(|e| KeycloakError::SecretUnavailable(e.to_string())),
            ClientSecret::Fixed(s) => Ok(s.clone()),
        }
    }

    /// A newer secret than `seen`, if there can be one.
    async fn rotated(&self, seen: &Secret) -> Result<Option<Secret>, KeycloakError> {
        match self {
            ClientSecret::SecretsManager(cache) => cache
                .refresh(seen)
                .await
                .map(Some)
                .map_err(|e| KeycloakError::SecretUnavailable(e.to_string())),
            ClientSecret::Fixed(_) => Ok(None),
        }
    }
}

/// Whether a request may be sent again when its outcome is unknown (timeout, 5xx).
/// Requests that were certainly not processed (connection refused, 429) are always retried.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Safety {
    Idempotent,
    NotIdempotent,
}

struct Reply {
    status: StatusCode,
    location: Option<String>,
    body: Vec<u8>,
}

struct CachedToken {
    token: Arc<str>,
    refresh_at: Instant,
}

/// The service account's access token, shared by every invocation of a warm instance.
#[derive(Default)]
struct TokenCache {
    current: RwLock<Option<CachedToken>>,
    /// Single flight: one client-credentials request at a time; the others wait and reuse it.
    refreshing: tokio::sync::Mutex<()>,
}

/// Refresh this long before the token's expiry, so a token never expires in flight.
const TOKEN_SKEW: Duration = Duration::from_secs(30);

impl TokenCache {
    fn fresh(&self) -> Option<Arc<str>> {
        let guard = self.current.read().ok()?;
        guard
            .as_ref()
            .filter(|c| Instant::now() < c.refresh_at)
            .map(|c| Arc::clone(&c.token))
    }

    fn store(&self, token: &str, expires_in: u64) -> Arc<str> {
        let lifetime = Duration::from_secs(expires_in);
        let refresh_in = lifetime.checked_sub(TOKEN_SKEW).unwrap_or(lifetime / 2);
        let token: Arc<str> = token.into();
        if let Ok(mut guard) = self.current.write() {
            *guard = Some(CachedToken {
                token: Arc::clone(&token),
                refresh_at: Instant::now() + refresh_in,
            });
        }
        token
    }

    /// Drop the token if it is still the one that was refused.
    fn invalidate(&self, refused: &str) {
        if let Ok(mut guard) = self.current.write() {
            if guard.as_ref().is_some_and(|c| &*c.token == refused) {
                *guard = None;
            }
        }
    }
}

/// Two clients with two secrets (README "Keycloak setup"): the **login** client makes the grants
/// of end users (password, refresh, logout) and has no service account; the **service** client's
/// service account holds the realm-management roles the admin API needs. A function is given only
/// the client it uses, so a public auth function cannot reach the admin API whatever its bug.
pub struct KeycloakClient {
    http: reqwest::Client,
    base_url: String,
    realm: String,
    login: Option<ClientCredentials>,
    service: Option<ClientCredentials>,
    retry: RetryPolicy,
    sa_token: TokenCache,
    /// The ids of the realm's service-account users and when they were read.
    service_accounts: tokio::sync::Mutex<Option<(Instant, Arc<HashSet<String>>)>>,
    /// Requests sent to Keycloak (every attempt), for a sync run's cost.
    requests: std::sync::atomic::AtomicU64,
}

/// The `iat` claim (epoch seconds) of a JWT, read without checking it: the token comes straight
/// from Keycloak's token endpoint over this client's own connection.
fn issued_at(jwt: &str) -> Option<i64> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<Value>(&raw)
        .ok()?
        .get("iat")?
        .as_i64()
}

fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, KeycloakError> {
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

    fn login_client(&self) -> Result<&ClientCredentials, KeycloakError> {
        self.login
            .as_ref()
            .ok_or(KeycloakError::NotConfigured("login client"))
    }

    fn service_client(&self) -> Result<&ClientCredentials, KeycloakError> {
        self.service
            .as_ref()
            .ok_or(KeycloakError::NotConfigured("service client"))
    }

    pub fn issuer(&self) -> String {
        format!("{}/realms/{}", self.base_url, self.realm)
    }

    fn oidc_url(&self, endpoint: &str) -> String {
        format!("{}/protocol/openid-connect/{endpoint}", self.issuer())
    }

    fn admin_url(&self, path: &str) -> String {
        format!("{}/admin/realms/{}{path}", self.base_url, self.realm)
    }

    /// Send with retries. Returns any answer that is not a retryable failure. Every attempt and
    /// every wait between attempts fits in the invocation's remaining time; past it the call is
    /// `Unavailable`, so the function answers (and compensates) before the platform cuts it off.
    async fn send(
        &self,
        safety: Safety,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Reply, KeycloakError> {
        let out_of_time = || KeycloakError::Unavailable {
            reason: "no answer before the invocation's deadline".into(),
        };
        // Wait before the next attempt, if the deadline leaves room for the wait and an attempt.
        let pause = |delay: Duration| async move {
            if crate::deadline::budget().is_some_and(|b| b <= delay) {
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
                    return Ok(Reply {
                        status,
                        location,
                        body,
                    });
                }
            }
        }
    }

    /// A form POST authenticated as this client. An `unauthorized_client` answer makes the secret
    /// be re-read once (rotation) and the call repeated with the new value.
    async fn client_form(
        &self,
        client: &ClientCredentials,
        endpoint_path: &str,
        endpoint: Endpoint,
        safety: Safety,
        form: &[(&str, &str)],
    ) -> Result<Reply, KeycloakError> {
        let url = self.oidc_url(endpoint_path);
        let mut secret = client.secret.get().await?;
        let mut rotated = false;
        loop {
            let reply = self
                .send(safety, || {
                    let mut fields: Vec<(&str, &str)> = form.to_vec();
                    fields.push(("client_id", &client.client_id));
                    fields.push(("client_secret", secret.expose()));
                    self.http.post(&url).form(&fields)
                })
                .await?;
            if reply.status.is_success() {
                return Ok(reply);
            }
            let err = classify(endpoint, reply.status.as_u16(), &reply.body);
            if err == KeycloakError::InvalidClient && !rotated {
                if let Some(newer) = client.secret.rotated(&secret).await? {
                    tracing::warn!(
                        "Keycloak refused the client secret; re-read it from Secrets Manager"
                    );
                    secret = newer;
                    rotated = true;
                    continue;
                }
            }
            return Err(err);
        }
    }

    // ---------------------------------------------------------------------------------------
    // OIDC

    /// Resource-owner password grant. Creates a Keycloak session, so it is never retried on an
    /// unknown outcome.
    pub async fn password_grant(
        &self,
        username: &str,
        password: &str,
    ) -> Result<TokenSet, KeycloakError> {
        let reply = self
            .client_form(
                self.login_client()?,
                "token",
                Endpoint::PasswordGrant,
                Safety::NotIdempotent,
                &[
                    ("grant_type", "password"),
                    ("username", username),
                    ("password", password),
                ],
            )
            .await?;
        json(&reply.body)
    }

    /// Where the browser goes to sign in with the login client's standard flow: `response_type`
    /// `code`, scope `openid`, PKCE S256 (`challenge`), `state` and `nonce` (contract §9).
    pub fn authorization_url(
        &self,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        challenge: &str,
    ) -> Result<String, KeycloakError> {
        let client = self.login_client()?;
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &client.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("response_type", "code")
            .append_pair("scope", "openid")
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256")
            .finish();
        Ok(format!("{}?{query}", self.oidc_url("auth")))
    }

    /// The PKCE verifier and the nonce of a sign-in, bound to its `state`: HMAC-SHA256 of the
    /// state under the login client's secret, so that neither is ever stored (a secret rotated
    /// between the two legs of a sign-in fails that sign-in).
    pub async fn sign_in_binding(&self, state: &str) -> Result<(String, String), KeycloakError> {
        let secret = self.login_client()?.secret.get().await?;
        let key =
            aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.expose().as_bytes());
        let derive = |purpose: &str| {
            let tag = aws_lc_rs::hmac::sign(&key, format!("{purpose}\n{state}").as_bytes());
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
        };
        Ok((derive("pkce-verifier"), derive("nonce")))
    }

    /// The `authorization_code` grant (contract §10). The code is single use, so the grant is
    /// never retried on an unknown outcome.
    pub async fn code_grant(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<TokenSet, KeycloakError> {
        let reply = self
            .client_form(
                self.login_client()?,
                "token",
                Endpoint::CodeGrant,
                Safety::NotIdempotent,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("code_verifier", verifier),
                    ("redirect_uri", redirect_uri),
                ],
            )
            .await?;
        json(&reply.body)
    }

    /// Refresh a session's tokens: as the login client, or (`public`) as the public app client
    /// the session belongs to, which has no secret.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        public: Option<&str>,
    ) -> Result<TokenSet, KeycloakError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        let reply = match public {
            Some(client_id) => {
                self.public_form(client_id, "token", Endpoint::RefreshGrant, &form)
                    .await?
            }
            None => {
                self.client_form(
                    self.login_client()?,
                    "token",
                    Endpoint::RefreshGrant,
                    Safety::Idempotent,
                    &form,
                )
                .await?
            }
        };
        json(&reply.body)
    }

    /// A form POST as a public client (`client_id` only), retried like any idempotent call.
    async fn public_form(
        &self,
        client_id: &str,
        endpoint_path: &str,
        endpoint: Endpoint,
        form: &[(&str, &str)],
    ) -> Result<Reply, KeycloakError> {
        let url = self.oidc_url(endpoint_path);
        let reply = self
            .send(Safety::Idempotent, || {
                let mut fields: Vec<(&str, &str)> = form.to_vec();
                fields.push(("client_id", client_id));
                self.http.post(&url).form(&fields)
            })
            .await?;
        if reply.status.is_success() {
            return Ok(reply);
        }
        Err(classify(endpoint, reply.status.as_u16(), &reply.body))
    }

    /// The user an access token speaks for, as Keycloak sees them now (`userinfo`): a session
    /// Keycloak has ended, or a disabled user, is `Unauthorized`.
    pub async fn userinfo(&self, access_token: &Secret) -> Result<Value, KeycloakError> {
        let url = self.oidc_url("userinfo");
        let reply = self
            .send(Safety::Idempotent, || {
                self.http.get(&url).bearer_auth(access_token.expose())
            })
            .await?;
        match reply.status.as_u16() {
            200 => json(&reply.body),
            401 | 403 => Err(KeycloakError::Unauthorized),
            status => Err(classify(Endpoint::Admin, status, &reply.body)),
        }
    }

    pub async fn client_credentials(&self) -> Result<TokenSet, KeycloakError> {
        let reply = self
            .client_form(
                self.service_client()?,
                "token",
                Endpoint::ClientCredentials,
                Safety::Idempotent,
                &[("grant_type", "client_credentials")],
            )
            .await?;
        json(&reply.body)
    }

    /// End the session of a refresh token. Always sends `refresh_token` (without it Keycloak
    /// answers an HTML page). An already-ended session is a success.
    pub async fn logout(&self, refresh_token: &str) -> Result<(), KeycloakError> {
        self.logout_as(refresh_token, None).await
    }

    /// `logout`, as the public app client the session belongs to when there is one.
    pub async fn logout_as(
        &self,
        refresh_token: &str,
        public: Option<&str>,
    ) -> Result<(), KeycloakError> {
        let form = [("refresh_token", refresh_token)];
        match public {
            Some(client_id) => {
                self.public_form(client_id, "logout", Endpoint::Logout, &form)
                    .await
            }
            None => {
                self.client_form(
                    self.login_client()?,
                    "logout",
                    Endpoint::Logout,
                    Safety::Idempotent,
                    &form,
                )
                .await
            }
        }
        .map(|_| ())
    }

    /// End one of the user's own sessions through the account API, with the user's own access
    /// token (needs the `account` audience and `manage-account`, both in Keycloak's default roles).
    /// Keycloak ends only sessions of the token's user; any other id is a no-op 204.
    pub async fn end_own_session(
        &self,
        access_token: &Secret,
        sid: &str,
    ) -> Result<(), KeycloakError> {
        let url = format!("{}/account/sessions/{}", self.issuer(), encode(sid));
        let reply = self
            .send(Safety::Idempotent, || {
                self.http.delete(&url).bearer_auth(access_token.expose())
            })
            .await?;
        if reply.status.is_success() {
            return Ok(());
        }
        Err(classify(
            Endpoint::Admin,
            reply.status.as_u16(),
            &reply.body,
        ))
    }

    pub async fn jwks(&self) -> Result<jsonwebtoken::jwk::JwkSet, KeycloakError> {
        let url = self.oidc_url("certs");
        let reply = self
            .send(Safety::Idempotent, || self.http.get(&url))
            .await?;
        if !reply.status.is_success() {
            return Err(KeycloakError::Protocol(format!(
                "JWKS answered HTTP {}",
                reply.status
            )));
        }
        json(&reply.body)
    }

    /// Open the connection pool and fill the caches during INIT (the service token, else the
    /// login client's secret), so the first request does not pay for them.
    pub async fn warm_up(&self) -> Result<(), KeycloakError> {
        match (&self.service, &self.login) {
            (Some(_), _) => self.service_token().await.map(|_| ()),
            (None, Some(login)) => login.secret.get().await.map(|_| ()),
            (None, None) => Ok(()),
        }
    }

    /// Keycloak's clock against ours (Keycloak minus ours, ms): a fresh client-credentials
    /// token's `iat` (Keycloak's time, whole seconds) against our time when the grant was sent.
    /// The truncation to seconds reads Keycloak's time up to a second early, the safe side for
    /// an event cursor. The token is kept for the calls that follow.
    pub async fn clock_skew_ms(&self) -> Result<i64, KeycloakError> {
        let sent = crate::clock::now_ms();
        let tokens = self.client_credentials().await?;
        self.sa_token.store(&tokens.access_token, tokens.expires_in);
        let iat = issued_at(&tokens.access_token)
            .ok_or_else(|| KeycloakError::Protocol("an access token without iat".into()))?;
        Ok(iat * 1000 - sent)
    }

    // ---------------------------------------------------------------------------------------
    // Service-account token

    async fn service_token(&self) -> Result<Arc<str>, KeycloakError> {
        if let Some(t) = self.sa_token.fresh() {
            return Ok(t);
        }
        let _flight = self.sa_token.refreshing.lock().await;
        if let Some(t) = self.sa_token.fresh() {
            return Ok(t);
        }
        let tokens = self.client_credentials().await?;
        Ok(self.sa_token.store(&tokens.access_token, tokens.expires_in))
    }

    /// An admin call as the service account. A 401 (token expired or revoked early) drops the
    /// cached token and retries once with a new one.
    async fn admin<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&B>,
        safety: Safety,
    ) -> Result<Reply, KeycloakError> {
        let url = self.admin_url(path);
        for attempt in 0..2 {
            let token = self.service_token().await?;
            let reply = self
                .send(safety, || {
                    let mut req = self.http.request(method.clone(), &url).bearer_auth(&*token);
                    if !query.is_empty() {
                        req = req.query(query);
                    }
                    if let Some(b) = body {
                        req = req.json(b);
                    }
                    req
                })
                .await?;
            if reply.status == StatusCode::UNAUTHORIZED && attempt == 0 {
                self.sa_token.invalidate(&token);
                continue;
            }
            if reply.status.is_success() {
                return Ok(reply);
            }
            return Err(classify(
                Endpoint::Admin,
                reply.status.as_u16(),
                &reply.body,
            ));
        }
        Err(KeycloakError::Unauthorized)
    }

    async fn admin_get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(String, String)],
    ) -> Result<T, KeycloakError> {
        let reply = self
            .admin::<()>(Method::GET, path, query, None, Safety::Idempotent)
            .await?;
        json(&reply.body)
    }

    // ---------------------------------------------------------------------------------------
    // Admin: users

    /// Create a user; returns its id, read from `Location`. A POST is not idempotent, so it is
    /// retried only when Keycloak certainly did not process it (429, connection refused).
    pub async fn create_user(&self, user: &NewUser) -> Result<String, KeycloakError> {
        let reply = self
            .admin(
                Method::POST,
                "/users",
                &[],
                Some(user),
                Safety::NotIdempotent,
            )
            .await?;
        reply
            .location
            .as_deref()
            .and_then(|l| l.rsplit('/').next())
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| KeycloakError::Protocol("user created without a Location header".into()))
    }

    /// A user as Keycloak stores them. `GET /users/{id}` shows a user in a temporary brute-force
    /// lockout as `enabled: false` (contract §4.1); a lockout is not a disable, so such a user is
    /// read as enabled (one more call, for disabled-looking users only).
    pub async fn get_user(&self, id: &str) -> Result<UserRepresentation, KeycloakError> {
        let mut rep: UserRepresentation = self
            .admin_get(&format!("/users/{}", encode(id)), &[])
            .await?;
        if !rep.enabled && self.temporarily_locked(id).await? {
            rep.enabled = true;
        }
        Ok(rep)
    }

    /// Whether brute-force detection holds the user back right now (a permanent lockout is a
    /// real disable and does not count).
    pub async fn temporarily_locked(&self, id: &str) -> Result<bool, KeycloakError> {
        let status: Value = self
            .admin_get(
                &format!("/attack-detection/brute-force/users/{}", encode(id)),
                &[],
            )
            .await?;
        Ok(status.get("disabled").and_then(Value::as_bool) == Some(true))
    }

    pub async fn find_user_by_username(
        &self,
        username: &str,
    ) -> Result<Option<UserRepresentation>, KeycloakError> {
        let found: Vec<UserRepresentation> = self
            .admin_get(
                "/users",
                &[
                    ("username".into(), username.to_owned()),
                    ("exact".into(), "true".into()),
                    ("briefRepresentation".into(), "false".into()),
                ],
            )
            .await?;
        Ok(found
            .into_iter()
            .find(|u| u.username == username.to_lowercase()))
    }

    /// Requests sent to Keycloak by this client so far (retries included).
    pub fn requests_sent(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether Keycloak's user search finds this id (`search=id:<id>`, contract §3): a second
    /// opinion on a 404 before anyone is deactivated over it.
    pub async fn found_by_search(&self, id: &str) -> Result<bool, KeycloakError> {
        let found: Vec<UserRepresentation> = self
            .admin_get(
                "/users",
                &[
                    ("search".into(), format!("id:{id}")),
                    ("briefRepresentation".into(), "true".into()),
                ],
            )
            .await?;
        Ok(found.iter().any(|u| u.id == id))
    }

    /// The user id of the service client's service account: the author Keycloak records on the
    /// admin events of this project's own writes. Read from the `sub` of its own token.
    pub async fn service_account_id(&self) -> Result<String, KeycloakError> {
        let token = self.service_token().await?;
        super::unverified_claims(&token)
            .and_then(|c| c.get("sub").and_then(Value::as_str).map(str::to_owned))
            .ok_or_else(|| KeycloakError::Protocol("the service token has no sub".into()))
    }

    /// The ids of the realm's service-account users: the `service-account-user` of every client
    /// with service accounts on. Keycloak 26 marks no user as one on the admin API, and does not
    /// reserve their name prefix (contract §14), so the clients are the one source. Read again
    /// after `SERVICE_ACCOUNTS_TTL`; a failed read is an error, never an empty set.
    pub async fn service_account_users(&self) -> Result<Arc<HashSet<String>>, KeycloakError> {
        let mut cached = self.service_accounts.lock().await;
        if let Some((read, ids)) = cached.as_ref() {
            if read.elapsed() < SERVICE_ACCOUNTS_TTL {
                return Ok(Arc::clone(ids));
            }
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Client {
            id: String,
            #[serde(default)]
            service_accounts_enabled: bool,
        }
        let clients: Vec<Client> = self.admin_get("/clients", &[]).await?;
        let mut ids = HashSet::new();
        for c in clients.iter().filter(|c| c.service_accounts_enabled) {
            let path = format!("/clients/{}/service-account-user", encode(&c.id));
            let user: UserRepresentation = self.admin_get(&path, &[]).await?;
            ids.insert(user.id);
        }
        let ids = Arc::new(ids);
        *cached = Some((Instant::now(), Arc::clone(&ids)));
        Ok(ids)
    }

    /// One page of users, ordered by username (service accounts excluded by Keycloak).
    pub async fn list_users(
        &self,
        first: u32,
        max: u32,
        brief: bool,
    ) -> Result<Vec<UserRepresentation>, KeycloakError> {
        self.admin_get(
            "/users",
            &[
                ("first".into(), first.to_string()),
                ("max".into(), max.to_string()),
                ("briefRepresentation".into(), brief.to_string()),
            ],
        )
        .await
    }

    pub async fn count_users(&self) -> Result<u64, KeycloakError> {
        self.admin_get("/users/count", &[]).await
    }

    /// GET → merge → PUT of the complete representation: a partial PUT would clear every
    /// field it leaves out (Keycloak 24+).
    pub async fn update_user(&self, id: &str, update: &UserUpdate) -> Result<(), KeycloakError> {
        let path = format!("/users/{}", encode(id));
        let mut rep: Value = self.admin_get(&path, &[]).await?;
        update.merge_into(&mut rep);
        self.admin(Method::PUT, &path, &[], Some(&rep), Safety::Idempotent)
            .await
            .map(|_| ())
    }

    pub async fn delete_user(&self, id: &str) -> Result<(), KeycloakError> {
        self.admin::<()>(
            Method::DELETE,
            &format!("/users/{}", encode(id)),
            &[],
            None,
            Safety::Idempotent,
        )
        .await
        .map(|_| ())
    }

    pub async fn reset_password(
        &self,
        id: &str,
        password: &str,
        temporary: bool,
    ) -> Result<(), KeycloakError> {
        let cred = PasswordCredential::new(password, temporary);
        self.admin(
            Method::PUT,
            &format!("/users/{}/reset-password", encode(id)),
            &[],
            Some(&cred),
            Safety::Idempotent,
        )
        .await
        .map(|_| ())
    }

    /// End every session of a user and make older tokens stale.
    pub async fn logout_user(&self, id: &str) -> Result<(), KeycloakError> {
        self.admin::<()>(
            Method::POST,
            &format!("/users/{}/logout", encode(id)),
            &[],
            None,
            Safety::Idempotent,
        )
        .await
        .map(|_| ())
    }

    pub async fn user_sessions(
        &self,
        id: &str,
    ) -> Result<Vec<UserSessionRepresentation>, KeycloakError> {
        self.admin_get(&format!("/users/{}/sessions", encode(id)), &[])
            .await
    }

    pub async fn delete_session(&self, sid: &str) -> Result<(), KeycloakError> {
        self.admin::<()>(
            Method::DELETE,
            &format!("/sessions/{}", encode(sid)),
            &[],
            None,
            Safety::Idempotent,
        )
        .await
        .map(|_| ())
    }

    /// The realm's user-profile configuration (declared attributes, validators, permissions).
    pub async fn user_profile(&self) -> Result<Value, KeycloakError> {
        self.admin_get("/users/profile", &[]).await
    }

    // ---------------------------------------------------------------------------------------
    // Admin: roles and groups

    pub async fn realm_roles(&self) -> Result<Vec<RoleRepresentation>, KeycloakError> {
        self.admin_get("/roles", &[("max".into(), "-1".into())])
            .await
    }

    /// Effective realm roles of a user: direct, from groups, and composites expanded.
    pub async fn user_effective_realm_roles(
        &self,
        id: &str,
    ) -> Result<Vec<RoleRepresentation>, KeycloakError> {
        self.admin_get(
            &format!("/users/{}/role-mappings/realm/composite", encode(id)),
            &[],
        )
        .await
    }

    /// The roles a composite realm role contains (realm and client roles).
    pub async fn role_composites(
        &self,
        role: &str,
    ) -> Result<Vec<RoleRepresentation>, KeycloakError> {
        self.admin_get(&format!("/roles/{}/composites", encode(role)), &[])
            .await
    }

    /// Users holding a realm role directly, one page.
    pub async fn role_members(
        &self,
        role: &str,
        first: u32,
        max: u32,
    ) -> Result<Vec<UserRepresentation>, KeycloakError> {
        self.admin_get(
            &format!("/roles/{}/users", encode(role)),
            &[
                ("first".into(), first.to_string()),
                ("max".into(), max.to_string()),
                ("briefRepresentation".into(), "true".into()),
            ],
        )
        .await
    }

    pub async fn groups(&self) -> Result<Vec<GroupRepresentation>, KeycloakError> {
        self.admin_get("/groups", &[("max".into(), "-1".into())])
            .await
    }

    pub async fn group_members(
        &self,
        group_id: &str,
        first: u32,
        max: u32,
    ) -> Result<Vec<UserRepresentation>, KeycloakError> {
        self.admin_get(
            &format!("/groups/{}/members", encode(group_id)),
            &[
                ("first".into(), first.to_string()),
                ("max".into(), max.to_string()),
                ("briefRepresentation".into(), "true".into()),
            ],
        )
        .await
    }

    pub async fn user_groups(&self, id: &str) -> Result<Vec<GroupRepresentation>, KeycloakError> {
        self.admin_get(
            &format!("/users/{}/groups", encode(id)),
            &[("max".into(), "-1".into())],
        )
        .await
    }

    // ---------------------------------------------------------------------------------------
    // Admin: events

    pub async fn admin_events(&self, q: &EventQuery) -> Result<Vec<AdminEvent>, KeycloakError> {
        self.admin_get("/admin-events", &q.params("resourceTypes"))
            .await
    }

    /// Whether and how long Keycloak stores events (needs `view-events`).
    pub async fn events_config(&self) -> Result<Value, KeycloakError> {
        self.admin_get("/events/config", &[]).await
    }

    pub async fn user_events(&self, q: &EventQuery) -> Result<Vec<UserEvent>, KeycloakError> {
        self.admin_get("/events", &q.params("type")).await
    }
}

/// Path-segment encoding for anything that travels in a URL path (ids, role names): an id from a
/// request can never reach another resource of the admin API.
fn encode(segment: &str) -> String {
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

    #[test]
    fn token_cache_refreshes_before_expiry_and_drops_refused_tokens() {
        let cache = TokenCache::default();
        cache.store("t1", 300);
        assert_eq!(cache.fresh().as_deref(), Some("t1"));
        cache.invalidate("other");
        assert_eq!(cache.fresh().as_deref(), Some("t1"));
        cache.invalidate("t1");
        assert!(cache.fresh().is_none());
        cache.store("t2", 20); // shorter than the skew: refreshed at half-life
        assert!(cache.fresh().is_some());
    }
}
