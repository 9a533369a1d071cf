//! API Gateway's JWT authorizer: the issuer's discovery document gives the JWKS; a token must be
//! signed by one of its keys, unexpired, from the issuer, and for one of the audiences (`aud`, or
//! `client_id` when there is no `aud`). Claims reach the function as strings, as API Gateway
//! passes them (arrays as `[a b]`, objects as their JSON text).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::template::JwtAuthorizer;

/// An unknown `kid` is looked up at most this often, whatever the outcome: an unreachable issuer
/// is not hammered by every request that arrives meanwhile.
const REFETCH_EVERY: Duration = Duration::from_secs(10);
/// A key fetch gives up after this.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, DecodingKey>,
    last_attempt: Option<Instant>,
}

pub struct Authorizer {
    config: JwtAuthorizer,
    http: reqwest::Client,
    /// Held only to read or swap the keys, never across a fetch.
    cache: std::sync::RwLock<KeyCache>,
    /// One fetch at a time; requests that need the keys meanwhile wait for it rather than
    /// being refused (API Gateway does not turn a valid token away while it loads its keys).
    fetching: tokio::sync::Mutex<()>,
}

impl Authorizer {
    pub fn new(config: JwtAuthorizer, http: reqwest::Client) -> Self {
        Authorizer {
            config,
            http,
            cache: std::sync::RwLock::new(KeyCache::default()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    async fn key(&self, kid: &str) -> Option<DecodingKey> {
        let cached = |cache: &std::sync::RwLock<KeyCache>| {
            cache.read().ok().and_then(|c| c.keys.get(kid).cloned())
        };
        if let Some(key) = cached(&self.cache) {
            return Some(key);
        }
        // Wait for a fetch in flight; the key it brought may be this one.
        let _one_fetch = self.fetching.lock().await;
        if let Some(key) = cached(&self.cache) {
            return Some(key);
        }
        {
            // An unknown key id: fetch again, but not more often than REFETCH_EVERY.
            let mut cache = self.cache.write().ok()?;
            if cache
                .last_attempt
                .is_some_and(|t| t.elapsed() < REFETCH_EVERY)
            {
                return None;
            }
            cache.last_attempt = Some(Instant::now());
        }
        let keys = tokio::time::timeout(FETCH_TIMEOUT, self.fetch_keys())
            .await
            .ok()
            .flatten()?;
        let mut cache = self.cache.write().ok()?;
        cache.keys = keys;
        cache.keys.get(kid).cloned()
    }

    async fn fetch_keys(&self) -> Option<HashMap<String, DecodingKey>> {
        let discovery: Value = self
            .http
            .get(format!(
                "{}/.well-known/openid-configuration",
                self.config.issuer
            ))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let set: JwkSet = self
            .http
            .get(discovery["jwks_uri"].as_str()?)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        Some(
            set.keys
                .iter()
                .filter_map(|k| Some((k.common.key_id.clone()?, DecodingKey::from_jwk(k).ok()?)))
                .collect(),
        )
    }

    pub async fn authorize(
        &self,
        authorization: Option<&str>,
    ) -> Result<BTreeMap<String, String>, ()> {
        let value = authorization.ok_or(())?.trim();
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .unwrap_or(value)
            .trim();
        let header = jsonwebtoken::decode_header(token).map_err(|_| ())?;
        if header.alg != Algorithm::RS256 {
            return Err(());
        }
        let key = self.key(header.kid.as_deref().ok_or(())?).await.ok_or(())?;
        let mut v = Validation::new(Algorithm::RS256);
        v.set_issuer(&[&self.config.issuer]);
        v.validate_aud = false;
        v.validate_nbf = true;
        v.leeway = 0;
        let claims = jsonwebtoken::decode::<Value>(token, &key, &v)
            .map_err(|_| ())?
            .claims;
        let audience_ok = match claims.get("aud") {
            Some(Value::String(a)) => self.config.audience.contains(a),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .any(|x| self.config.audience.iter().any(|y| y == x)),
            _ => claims
                .get("client_id")
                .and_then(Value::as_str)
                .is_some_and(|c| self.config.audience.iter().any(|y| y == c)),
        };
        if !audience_ok {
            return Err(());
        }
        Ok(claims
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), as_string(v))).collect())
            .unwrap_or_default())
    }
}

fn as_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(as_string).collect::<Vec<_>>().join(" ")
        ),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::as_string;
    use serde_json::json;

    #[test]
    fn claims_are_passed_as_strings() {
        assert_eq!(as_string(&json!(["a", "b"])), "[a b]");
        assert_eq!(as_string(&json!(300)), "300");
        assert_eq!(as_string(&json!(true)), "true");
    }
}
