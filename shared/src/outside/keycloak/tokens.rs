//! The realm's OIDC endpoints: the grants (password, authorization code, refresh, client
//! credentials), the authorization URL, userinfo, logout and the end-session endpoint, the JWKS,
//! and the service account's token, cached and fetched by one request at a time.

use std::sync::Arc;

use serde_json::Value;

use base64::Engine;

use super::client::KeycloakClient;
use super::client::{encode, json, Reply, Safety};
use super::credentials::ClientCredentials;
use super::error::{classify, Endpoint, KeycloakError};
use super::jwt::unverified_claims;
use super::types::*;
use crate::outside::secrets::Secret;

impl KeycloakClient {
    /// A form POST authenticated as this client. An `unauthorized_client` answer makes the secret
    /// be re-read once (rotation) and the call repeated with the new value.
    pub(super) async fn client_form(
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
    pub(super) async fn public_form(
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
        let sent = crate::base::clock::now_ms();
        let tokens = self.client_credentials().await?;
        self.sa_token.store(&tokens.access_token, tokens.expires_in);
        let iat = unverified_claims(&tokens.access_token)
            .and_then(|c| c.get("iat")?.as_i64())
            .ok_or_else(|| KeycloakError::Protocol("an access token without iat".into()))?;
        Ok(iat * 1000 - sent)
    }

    pub(super) async fn service_token(&self) -> Result<Arc<str>, KeycloakError> {
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
}
