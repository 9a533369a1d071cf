//! Everything a function needs, built once per cold start and borrowed by every invocation:
//! configuration, AWS clients (honouring `AWS_ENDPOINT_URL` for local runs), the client-secret
//! cache, the Keycloak client, the bearer validator and the store. `warm_up` opens connections and
//! fills the caches during INIT, so the first request does not pay for them.

use std::sync::Arc;

use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;
use aws_smithy_runtime_api::client::interceptors::SharedInterceptor;

use crate::base::config::{ClientConfig, Config, ConfigError};
use crate::error::Error;
use crate::outside::auth::BearerValidator;
use crate::outside::aws_api::{AwsApi, Service, LAMBDA, SECRETS_MANAGER};
use crate::outside::aws_calls::CallRecorder;
use crate::outside::keycloak::{
    ClientCredentials, ClientSecret, KeycloakClient, KeycloakError, RetryPolicy,
};
use crate::outside::lambda::LambdaClient;
use crate::outside::secrets::{ClientSecretCache, DEFAULT_TTL};
use crate::outside::store::Store;
use crate::rules::policy::Policy;
use crate::rules::profile::AttributeRules;

pub struct Services {
    pub config: Config,
    pub keycloak: Arc<KeycloakClient>,
    pub bearer: BearerValidator,
    pub store: Store,
    /// For starting bulk-sync runs (asynchronous invoke of `SYNC_FUNCTION_NAME`).
    pub lambda: LambdaClient,
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
    Secret(#[from] crate::outside::secrets::SecretError),
}

/// The AWS configuration every function's clients share, and the call recorder if there is one,
/// loaded once per process (a cold start) by whoever asks first (`aws_setup`). The SDK reads
/// AWS_ENDPOINT_URL itself, as `AwsApi` does; throttling and transient errors get the standard
/// retry mode with a few more attempts than the default.
#[derive(Clone)]
pub(crate) struct AwsSetup {
    aws: aws_config::SdkConfig,
    /// Test stacks record every AWS call (crate::outside::aws_calls); a deployment never does.
    recorder: Option<CallRecorder>,
}

impl AwsSetup {
    /// The DynamoDB client, with the call recorder if there is one.
    pub(crate) fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        let mut config = aws_sdk_dynamodb::config::Builder::from(&self.aws);
        config.set_interceptors(self.recorder.clone().map(SharedInterceptor::new));
        aws_sdk_dynamodb::Client::from_conf(config.build())
    }

    /// Another service's API (`outside::aws_api`), with the call recorder if there is one.
    pub(crate) fn api(&self, service: &'static Service) -> AwsApi {
        AwsApi::from_config(service, &self.aws, self.recorder.clone())
    }
}

pub(crate) async fn aws_setup() -> AwsSetup {
    static LOADED: tokio::sync::OnceCell<AwsSetup> = tokio::sync::OnceCell::const_new();
    LOADED
        .get_or_init(|| async {
            let aws = aws_config::defaults(BehaviorVersion::latest())
                .retry_config(RetryConfig::standard().with_max_attempts(5))
                .load()
                .await;
            AwsSetup {
                aws,
                recorder: CallRecorder::from_env(),
            }
        })
        .await
        .clone()
}

impl Services {
    pub async fn from_env() -> Result<Self, StartError> {
        Self::new(Config::from_env()?).await
    }

    pub async fn new(config: Config) -> Result<Self, StartError> {
        let aws = aws_setup().await;
        let secretsmanager = aws.api(&SECRETS_MANAGER);
        let cache = |c: &ClientConfig| {
            Arc::new(ClientSecretCache::new(
                secretsmanager.clone(),
                &c.secret_id,
                DEFAULT_TTL,
            ))
        };
        let login = config.login_client.as_ref().map(|c| (c, cache(c)));
        let service = config.admin_client.as_ref().map(|c| (c, cache(c)));
        let mut keycloak = KeycloakClient::new(
            &config.keycloak_url,
            &config.keycloak_realm,
            RetryPolicy::default(),
        )?;
        if let Some((c, secret)) = &login {
            keycloak = keycloak.with_login_client(ClientCredentials::new(
                &c.client_id,
                ClientSecret::SecretsManager(Arc::clone(secret)),
            ));
        }
        if let Some((c, secret)) = &service {
            keycloak = keycloak.with_service_client(ClientCredentials::new(
                &c.client_id,
                ClientSecret::SecretsManager(Arc::clone(secret)),
            ));
        }
        // The list-cursor key comes from the service secret where there is one (only the admin
        // function lists), else from the login secret.
        let Some((_, key_source)) = service.or(login) else {
            return Err(StartError::Config(ConfigError::no_client()));
        };
        let secret = key_source.get().await?;
        let dynamodb = aws.dynamodb();
        let store = Store::new(dynamodb, &config.table_name, &cursor_key(secret.expose()));
        let lambda = LambdaClient::new_from(aws.api(&LAMBDA));
        Ok(Self::from_parts(config, Arc::new(keycloak), store, lambda))
    }

    /// Assemble from clients built elsewhere (tests and tools with their own endpoints).
    pub fn from_parts(
        config: Config,
        keycloak: Arc<KeycloakClient>,
        store: Store,
        lambda: LambdaClient,
    ) -> Self {
        Services {
            bearer: BearerValidator::new(Arc::clone(&keycloak), &config),
            policy: Policy::new(&config),
            attribute_rules: tokio::sync::OnceCell::new(),
            config,
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
    /// The service token and the JWKS are fetched at once: INIT waits for the slower one only.
    pub async fn warm_up(&self) {
        let (token, keys) = tokio::join!(self.keycloak.warm_up(), self.bearer.warm_up());
        if let Err(e) = token {
            tracing::warn!(error = %e, "warm-up: no Keycloak credentials yet");
        }
        if let Err(e) = keys {
            tracing::warn!(error = %e, "warm-up: no JWKS yet");
        }
    }
}

/// Key of the list-cursor HMAC, derived from a client secret: the same on every instance of a
/// deployment, unknown to clients. A secret rotation invalidates outstanding cursors (the client
/// gets `invalid_cursor` and lists again from the start).
fn cursor_key(client_secret: &str) -> Vec<u8> {
    let material = format!("keycloak-user-sync list cursor|{client_secret}");
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, material.as_bytes())
        .as_ref()
        .to_vec()
}
