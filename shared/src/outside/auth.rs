//! Bearer-token validation in the function (the API Gateway JWT authorizer is a second wall, not
//! the only one): RS256 only, the key chosen by `kid` among the realm's `use=sig` keys, a JWKS
//! cached and re-fetched (at most every 30 s) when an unknown `kid` shows up after a key rotation;
//! `iss`, `exp`, `nbf`, and the audience (`aud` or `azp`) checked with a small leeway.

use crate::base::clock::EpochSecs;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};

use crate::base::config::Config;
use crate::outside::keycloak::KeycloakClient;
use crate::outside::secrets::Secret;

/// The `events` member of a back-channel logout token.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 30;
/// An unknown `kid` re-fetches the JWKS at most this often.
pub const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// After a failed JWKS fetch, no new fetch for this long: an outage of Keycloak is not multiplied
/// by the requests that arrive during it (the last good key set keeps serving known keys).
pub const JWKS_NEGATIVE_TTL: Duration = Duration::from_secs(5);

/// Why a token was refused. Logged; the client only ever sees 401.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("algorithm {0} is not accepted")]
    Algorithm(String),
    #[error("no signing key with this kid")]
    UnknownKey,
    #[error("token rejected: {0}")]
    Invalid(String),
    #[error("wrong audience")]
    Audience,
    #[error("not an access token")]
    NotAccessToken,
    #[error("signing keys unavailable: {0}")]
    KeysUnavailable(String),
}

/// The caller of a bearer route, from a validated access token.
#[derive(Clone, Debug, PartialEq)]
pub struct Principal {
    pub user_id: String,
    pub username: String,
    pub email: Option<String>,
    pub session_id: Option<String>,
    pub realm_roles: Vec<String>,
    /// clientId → roles
    pub client_roles: BTreeMap<String, Vec<String>>,
    pub expires_at: EpochSecs,
    pub claims: Value,
    /// The access token itself, for calls Keycloak makes on the user's own behalf (the account
    /// API). Never printed.
    pub token: Secret,
}

/// The strings of a JSON array claim (anything else, or a missing claim: none).
pub(crate) fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

impl Principal {
    pub fn has_realm_role(&self, role: &str) -> bool {
        self.realm_roles.iter().any(|r| r == role)
    }

    fn from_claims(claims: Value, token: &str) -> Result<Self, AuthError> {
        let text = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_owned);
        let client_roles = claims
            .get("resource_access")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(client, v)| (client.clone(), strings(v.get("roles"))))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Principal {
            user_id: text("sub").ok_or_else(|| AuthError::Invalid("no sub".into()))?,
            username: text("preferred_username").unwrap_or_default(),
            email: text("email"),
            session_id: text("sid"),
            realm_roles: strings(claims.pointer("/realm_access/roles")),
            client_roles,
            expires_at: EpochSecs(claims.get("exp").and_then(Value::as_i64).unwrap_or(0)),
            claims,
            token: Secret::new(token),
        })
    }
}

struct Keys {
    by_kid: HashMap<String, Arc<DecodingKey>>,
    fetched_at: Instant,
}

pub struct BearerValidator {
    keycloak: Arc<KeycloakClient>,
    issuer: String,
    audiences: Vec<String>,
    keys: RwLock<Option<Keys>>,
    fetching: Mutex<()>,
    /// When the last fetch failed, and why.
    failed: std::sync::Mutex<Option<(Instant, String)>>,
}

fn signing_keys(set: &JwkSet) -> HashMap<String, Arc<DecodingKey>> {
    set.keys
        .iter()
        .filter(|k| {
            matches!(
                k.common.public_key_use,
                None | Some(PublicKeyUse::Signature)
            )
        })
        .filter(|k| matches!(k.algorithm, AlgorithmParameters::RSA(_)))
        .filter_map(|k| {
            let kid = k.common.key_id.clone()?;
            let key = DecodingKey::from_jwk(k).ok()?;
            Some((kid, Arc::new(key)))
        })
        .collect()
}

impl BearerValidator {
    pub fn new(keycloak: Arc<KeycloakClient>, config: &Config) -> Self {
        BearerValidator {
            issuer: config.issuer(),
            audiences: config.jwt_audience.clone(),
            keycloak,
            keys: RwLock::new(None),
            fetching: Mutex::new(()),
            failed: std::sync::Mutex::new(None),
        }
    }

    /// Fetch the JWKS now (during INIT), so the first request does not wait for it.
    pub async fn warm_up(&self) -> Result<(), AuthError> {
        self.refetch(None).await.map(|_| ())
    }

    /// `Authorization` header value → the caller.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        let token = authorization
            .and_then(|h| {
                let (scheme, token) = h.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        self.validate(token).await
    }

    pub async fn validate(&self, token: &str) -> Result<Principal, AuthError> {
        let claims = self
            .verified_claims(token, None, &["exp", "iss", "sub"])
            .await?;
        if claims.get("typ").and_then(Value::as_str) != Some("Bearer") {
            return Err(AuthError::NotAccessToken);
        }
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => self.audiences.contains(a),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .any(|a| self.audiences.iter().any(|x| x == a)),
            _ => false,
        };
        let azp_ok = claims
            .get("azp")
            .and_then(Value::as_str)
            .is_some_and(|a| self.audiences.iter().any(|x| x == a));
        if !(aud_ok || azp_ok) {
            return Err(AuthError::Audience);
        }
        Principal::from_claims(claims, token)
    }

    /// The claims of an OIDC Back-Channel Logout token (§2.6 of the spec, contract §12): header
    /// `typ` `logout+jwt`, RS256 by a realm key, `iss` the realm, `aud` one of `audiences`,
    /// `exp` and `iat` (not in the future) within the leeway, `jti`, the back-channel-logout
    /// event, `sub` (Keycloak always sends it; this service finds sessions by user), and no
    /// `nonce`. Whether the `jti` was seen before is the caller's check.
    pub async fn logout_token(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<Value, AuthError> {
        let claims = self
            .verified_claims(
                token,
                Some("logout+jwt"),
                &["exp", "iss", "aud", "iat", "jti", "sub"],
            )
            .await?;
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => audiences.contains(a),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .any(|a| audiences.iter().any(|x| x == a)),
            _ => false,
        };
        if !aud_ok {
            return Err(AuthError::Audience);
        }
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let iat = claims
            .get("iat")
            .and_then(Value::as_i64)
            .unwrap_or(i64::MAX);
        if iat > now + LEEWAY_SECS as i64 {
            return Err(AuthError::Invalid("issued in the future".into()));
        }
        let event = claims
            .pointer("/events")
            .and_then(Value::as_object)
            .is_some_and(|e| e.contains_key(BACKCHANNEL_LOGOUT_EVENT));
        if !event {
            return Err(AuthError::Invalid("no back-channel logout event".into()));
        }
        if claims.get("jti").and_then(Value::as_str).is_none() {
            return Err(AuthError::Invalid("no jti".into()));
        }
        if claims.get("nonce").is_some() {
            return Err(AuthError::Invalid("a logout token carries no nonce".into()));
        }
        Ok(claims)
    }

    /// The claims of an ID token of the standard flow (OIDC Core §3.1.3.7): RS256 by a realm key,
    /// `iss` the realm, `typ` `ID`, `aud` the client (with `azp` the client when `aud` names
    /// several), current, and the sign-in's `nonce`.
    pub async fn id_token(
        &self,
        token: &str,
        client_id: &str,
        nonce: &str,
    ) -> Result<Value, AuthError> {
        let claims = self
            .verified_claims(token, None, &["exp", "iss", "aud", "sub"])
            .await?;
        if claims.get("typ").and_then(Value::as_str) != Some("ID") {
            return Err(AuthError::Invalid("not an ID token".into()));
        }
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => a == client_id,
            Some(Value::Array(list)) => {
                list.iter().any(|a| a.as_str() == Some(client_id))
                    && (list.len() == 1
                        || claims.get("azp").and_then(Value::as_str) == Some(client_id))
            }
            _ => false,
        };
        if !aud_ok {
            return Err(AuthError::Audience);
        }
        if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
            return Err(AuthError::Invalid("the nonce is not this sign-in's".into()));
        }
        Ok(claims)
    }

    /// Signature (RS256, a realm key by `kid`), issuer, expiry and `nbf` with the leeway, the
    /// `required` claims, and the header's `typ` where one is asked for.
    async fn verified_claims(
        &self,
        token: &str,
        typ: Option<&str>,
        required: &[&str],
    ) -> Result<Value, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::Algorithm(format!("{:?}", header.alg)));
        }
        if let Some(expected) = typ {
            if !header
                .typ
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case(expected))
            {
                return Err(AuthError::Invalid(format!("header typ is not {expected}")));
            }
        }
        let kid = header.kid.ok_or(AuthError::UnknownKey)?;
        let key = match self.cached_key(&kid).await {
            Some(k) => k,
            None => self
                .refetch(Some(&kid))
                .await?
                .ok_or(AuthError::UnknownKey)?,
        };
        let mut validation = Validation::new(Algorithm::RS256);
        validation.algorithms = vec![Algorithm::RS256];
        validation.set_issuer(&[&self.issuer]);
        validation.validate_aud = false; // each caller checks its own audience
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(required);
        jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| AuthError::Invalid(format!("{:?}", e.kind())))
    }

    /// The reason of a fetch that failed within the negative TTL.
    fn recent_failure(&self) -> Option<String> {
        let failed = self.failed.lock().ok()?;
        failed
            .as_ref()
            .filter(|(at, _)| at.elapsed() < JWKS_NEGATIVE_TTL)
            .map(|(_, reason)| format!("{reason} (not retried for a few seconds)"))
    }

    async fn cached_key(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        self.keys
            .read()
            .await
            .as_ref()
            .and_then(|k| k.by_kid.get(kid).cloned())
    }

    /// Fetch the JWKS unless it was fetched within the refetch interval (so a flood of tokens
    /// with made-up `kid`s cannot hammer Keycloak). Returns the key for `kid` if there is one.
    async fn refetch(&self, kid: Option<&str>) -> Result<Option<Arc<DecodingKey>>, AuthError> {
        let _one = self.fetching.lock().await;
        {
            let keys = self.keys.read().await;
            if let Some(k) = keys.as_ref() {
                let found = kid.and_then(|kid| k.by_kid.get(kid).cloned());
                if found.is_some() || k.fetched_at.elapsed() < JWKS_REFETCH_INTERVAL {
                    return Ok(found);
                }
            }
        }
        if let Some(reason) = self.recent_failure() {
            return Err(AuthError::KeysUnavailable(reason));
        }
        let set = match self.keycloak.jwks().await {
            Ok(set) => set,
            Err(e) => {
                let reason = e.to_string();
                if let Ok(mut f) = self.failed.lock() {
                    *f = Some((Instant::now(), reason.clone()));
                }
                return Err(AuthError::KeysUnavailable(reason));
            }
        };
        let by_kid = signing_keys(&set);
        let found = kid.and_then(|kid| by_kid.get(kid).cloned());
        *self.keys.write().await = Some(Keys {
            by_kid,
            fetched_at: Instant::now(),
        });
        Ok(found)
    }
}
