//! The configuration, read from the environment once: every variable a function reads is read
//! here. `Config` for the functions that hold a Keycloak client, `HookConfig` for the webhook
//! functions, `LambdaEnv` for what the runtime (or the local stack) sets for all of them.

mod error;
mod hooks;
mod lambda;
mod lookup;
mod service;

pub use error::ConfigError;
pub use hooks::{HookConfig, DEFAULT_HOOK_MAX_EVENT_AGE_S};
pub use lambda::LambdaEnv;
pub use service::{ClientConfig, Config, DeactivationGuard, ThrottleLimits};
