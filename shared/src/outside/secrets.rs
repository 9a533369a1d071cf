//! The Keycloak client secret, read from Secrets Manager (`{"client_secret": "..."}`) and cached in
//! memory with a TTL so a rotation is picked up within minutes; `refresh` re-reads it at once (the
//! Keycloak client calls it after an `unauthorized_client` answer).
//!
//! Why not `aws_secretsmanager_caching`: it depends on `aws-config` with its default features (the
//! SSO SDKs and credentials-process), which every function binary would then compile and carry,
//! for what is here one value, a TTL and a forced refresh. The read is Secrets Manager's
//! `GetSecretValue`, signed and sent by `outside::aws_api`. The secret value never reaches a log.

use crate::base::deadline::Bounded;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, RwLock};

use super::aws_api::AwsApi;

pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// A secret value that never prints itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret {id}: {reason}")]
    Unavailable { id: String, reason: String },
    #[error("secret {id} is not {{\"{key}\": \"...\"}}")]
    Malformed { id: String, key: &'static str },
    /// The secret has no version at the stage asked for (no rotation happened yet).
    #[error("secret {id} has no such version")]
    NoSuchVersion { id: String },
}

pub struct ClientSecretCache {
    /// Secrets Manager's API (`aws_api::SECRETS_MANAGER`).
    client: AwsApi,
    secret_id: String,
    /// The JSON key holding the value.
    key: &'static str,
    /// The version read: Secrets Manager's `AWSCURRENT` unless set (`AWSPREVIOUS`: the value a
    /// rotation replaced, still valid while the other side catches up).
    stage: Option<&'static str>,
    ttl: Duration,
    cached: RwLock<Option<(Secret, Instant)>>,
    /// One read at a time: concurrent callers of a cold or expired cache wait for it.
    reading: Mutex<()>,
}

impl ClientSecretCache {
    pub fn new(client: AwsApi, secret_id: impl Into<String>, ttl: Duration) -> Self {
        Self::with_key(client, secret_id, "client_secret", ttl)
    }

    /// A cache of another secret of the same shape, `{"<key>": "..."}` (the webhook secret).
    pub fn with_key(
        client: AwsApi,
        secret_id: impl Into<String>,
        key: &'static str,
        ttl: Duration,
    ) -> Self {
        ClientSecretCache {
            client,
            secret_id: secret_id.into(),
            key,
            stage: None,
            ttl,
            cached: RwLock::new(None),
            reading: Mutex::new(()),
        }
    }

    /// The same cache over another version stage of the secret.
    pub fn at_stage(mut self, stage: &'static str) -> Self {
        self.stage = Some(stage);
        self
    }

    /// The cached value while it is younger than the TTL, else a fresh read.
    pub async fn get(&self) -> Result<Secret, SecretError> {
        if let Some(s) = self.fresh().await {
            return Ok(s);
        }
        let _one_reader = self.reading.lock().await;
        if let Some(s) = self.fresh().await {
            return Ok(s);
        }
        self.read().await
    }

    /// Read the secret again now, whatever the cache holds. `seen` is the value the caller found
    /// wanting: if another caller already replaced it, that newer value is returned without a read.
    pub async fn refresh(&self, seen: &Secret) -> Result<Secret, SecretError> {
        let _one_reader = self.reading.lock().await;
        if let Some((current, _)) = self.cached.read().await.as_ref() {
            if current != seen {
                return Ok(current.clone());
            }
        }
        self.read().await
    }

    /// Drop the cached value: the next `get` reads the secret again.
    pub async fn forget(&self) {
        *self.cached.write().await = None;
    }

    async fn fresh(&self) -> Option<Secret> {
        let cached = self.cached.read().await;
        cached
            .as_ref()
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(s, _)| s.clone())
    }

    async fn read(&self) -> Result<Secret, SecretError> {
        let mut input = serde_json::json!({ "SecretId": self.secret_id });
        if let Some(stage) = self.stage {
            input["VersionStage"] = stage.into();
        }
        let out = self
            .client
            .call("GetSecretValue", &input)
            .within_deadline()
            .await
            .map_err(|_| SecretError::Unavailable {
                id: self.secret_id.clone(),
                reason: "no answer before the invocation's deadline".into(),
            })?
            .map_err(|e| {
                let no_version = e.code() == Some("ResourceNotFoundException");
                if no_version && self.stage.is_some() {
                    return SecretError::NoSuchVersion {
                        id: self.secret_id.clone(),
                    };
                }
                SecretError::Unavailable {
                    id: self.secret_id.clone(),
                    reason: e.to_string(),
                }
            })?;
        let malformed = || SecretError::Malformed {
            id: self.secret_id.clone(),
            key: self.key,
        };
        let text = out["SecretString"].as_str().ok_or_else(malformed)?;
        let value: serde_json::Value = serde_json::from_str(text).map_err(|_| malformed())?;
        let secret = value
            .get(self.key)
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty())
            .map(Secret::new)
            .ok_or_else(malformed)?;
        *self.cached.write().await = Some((secret.clone(), Instant::now()));
        tracing::debug!(secret_id = %self.secret_id, "client secret read from Secrets Manager");
        Ok(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print_their_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), "hunter2");
    }
}
