//! The Keycloak clients' credentials: a client id and its secret (fixed, or read from Secrets
//! Manager with a retry after a rotation), and the service account's cached access token.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::error::KeycloakError;
use crate::outside::secrets::{ClientSecretCache, Secret};

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
    pub(super) async fn get(&self) -> Result<Secret, KeycloakError> {
        match self {
            ClientSecret::SecretsManager(cache) => cache
                .get()
                .await
                .map_err(|e| KeycloakError::SecretUnavailable(e.to_string())),
            ClientSecret::Fixed(s) => Ok(s.clone()),
        }
    }

    /// A newer secret than `seen`, if there can be one.
    pub(super) async fn rotated(&self, seen: &Secret) -> Result<Option<Secret>, KeycloakError> {
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

struct CachedToken {
    token: Arc<str>,
    refresh_at: Instant,
}

/// The service account's access token, shared by every invocation of a warm instance.
#[derive(Default)]
pub(super) struct TokenCache {
    current: RwLock<Option<CachedToken>>,
    /// Single flight: one client-credentials request at a time; the others wait and reuse it.
    pub(super) refreshing: tokio::sync::Mutex<()>,
}

/// Refresh this long before the token's expiry, so a token never expires in flight.
const TOKEN_SKEW: Duration = Duration::from_secs(30);

impl TokenCache {
    pub(super) fn fresh(&self) -> Option<Arc<str>> {
        let guard = self.current.read().ok()?;
        guard
            .as_ref()
            .filter(|c| Instant::now() < c.refresh_at)
            .map(|c| Arc::clone(&c.token))
    }

    pub(super) fn store(&self, token: &str, expires_in: u64) -> Arc<str> {
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
    pub(super) fn invalidate(&self, refused: &str) {
        if let Ok(mut guard) = self.current.write() {
            if guard.as_ref().is_some_and(|c| &*c.token == refused) {
                *guard = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
