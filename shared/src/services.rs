//! Everything a function needs, built once per cold start and borrowed by every invocation:
//! configuration, AWS clients (honouring `AWS_ENDPOINT_URL` for local runs), the client-secret
//! cache, the Keycloak client, the bearer validator and the store. `warm_up` opens connections and
//! fills the caches during INIT, so the first request does not pay for them.

use std::sync::Arc;

use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;

use crate::auth::BearerValidator;
use crate::config::{Config, ConfigError};
use crate::error::Error;
use crate::keycloak::{ClientSecret, KeycloakClient, KeycloakError, RetryPolicy};
use crate::policy::Policy;
use crate::profile::AttributeRules;
use crate::secrets::{ClientSecretCache, DEFAULT_TTL};
use crate::store::Store;

pub struct Services {
    pub config: Config,
    pub secrets: Arc<ClientSecretCache>,
    pub keycloak: Arc<KeycloakClient>,
    pub bearer: BearerValidator,
    pub store: Store,
    /// For starting bulk-sync runs (asynchronous invoke of `SYNC_FUNCTION_NAME`).
    pub lambda: aws_sdk_lambda::Client,
    pub policy: Policy,
    /// Who may write which business attribute, read from the realm's user profile once per cold
    /// start (on first use, or during INIT by `warm_up_attribute_rules`).
    attribute_rules: tokio::sync::OnceCell<Arc<AttributeRules>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("Keycloak client: {0}")]
    Keycloak(#[from] KeycloakError),
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
}

impl Services {
    pub async fn from_env() -> Result<Self, StartError> {
        Self::new(Config::from_env()?).await
    }

    pub async fn new(config: Config) -> Result<Self, StartError> {
        // The SDK reads AWS_ENDPOINT_URL itself; throttling and transient errors get the standard
        // retry mode with a few more attempts than the default.
        let aws = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(5))
            .load()
            .await;
        let secrets = Arc::new(ClientSecretCache::new(
            aws_sdk_secretsmanager::Client::new(&aws),
            &config.keycloak_secret_id,
            DEFAULT_TTL,
        ));
        let keycloak = Arc::new(KeycloakClient::new(
            &config.keycloak_url,
            &config.keycloak_realm,
            &config.keycloak_client_id,
            ClientSecret::SecretsManager(Arc::clone(&secrets)),
            RetryPolicy::default(),
        )?);
        let secret = secrets.get().await?;
        let store = Store::new(
            aws_sdk_dynamodb::Client::new(&aws),
            &config.table_name,
            &cursor_key(secret.expose()),
        );
        let lambda = aws_sdk_lambda::Client::new(&aws);
        Ok(Self::from_parts(config, secrets, keycloak, store, lambda))
    }

    /// Assemble from clients built elsewhere (tests and tools with their own endpoints).
    pub fn from_parts(
        config: Config,
        secrets: Arc<ClientSecretCache>,
        keycloak: Arc<KeycloakClient>,
        store: Store,
        lambda: aws_sdk_lambda::Client,
    ) -> Self {
        Services {
            bearer: BearerValidator::new(Arc::clone(&keycloak), &config),
            policy: Policy::new(&config),
            attribute_rules: tokio::sync::OnceCell::new(),
            config,
            secrets,
            keycloak,
            store,
            lambda,
        }
    }

    /// Who may write which business attribute (the realm's user profile, read once).
    pub async fn attribute_rules(&self) -> Result<Arc<AttributeRules>, Error> {
        self.attribute_rules
            .get_or_try_init(|| async {
                let profile = self.keycloak.user_profile().await?;
                Ok::<_, Error>(Arc::new(AttributeRules::from_user_profile(
                    &self.config.user_attributes,
                    &profile,
                )))
            })
            .await
            .cloned()
    }

    /// Best effort: a failure here is logged, and the request that needs the resource retries.
    pub async fn warm_up(&self) {
        if let Err(e) = self.keycloak.warm_up().await {
            tracing::warn!(error = %e, "warm-up: no service-account token yet");
        }
        if let Err(e) = self.bearer.warm_up().await {
            tracing::warn!(error = %e, "warm-up: no JWKS yet");
        }
    }
}

/// Key of the list-cursor HMAC, derived from the client secret: the same on every instance of a
/// deployment, unknown to clients. A secret rotation invalidates outstanding cursors (the client
/// gets `invalid_cursor` and lists again from the start).
fn cursor_key(client_secret: &str) -> Vec<u8> {
    let material = format!("keycloak-user-sync list cursor|{client_secret}");
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, material.as_bytes())
        .as_ref()
        .to_vec()
}
