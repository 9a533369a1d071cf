//! `HookConfig`: the webhook functions' environment.

use super::error::ConfigError;
use super::lookup;

/// How old a webhook delivery may be by default (`HOOK_MAX_EVENT_AGE_SECONDS`).
pub const DEFAULT_HOOK_MAX_EVENT_AGE_S: i64 = 20 * 60;

/// The webhook functions' environment: they hold no Keycloak client, so `Config` is not theirs.
/// The intake (`keycloak-hook`) needs the secret, the queue and the table; the consumer's
/// backoff needs the queue.
#[derive(Clone, Debug, PartialEq)]
pub struct HookConfig {
    /// `HOOK_SECRET_ID`: the webhook secret in Secrets Manager.
    pub secret_id: Option<String>,
    /// `HOOK_QUEUE_URL`: the webhook queue.
    pub queue_url: Option<String>,
    /// `TABLE_NAME`.
    pub table_name: Option<String>,
    /// `HOOK_MAX_EVENT_AGE_SECONDS`: how old a delivery may be (default 1200).
    pub max_event_age_s: i64,
    /// `HOOK_RETRY_BASE_SECONDS`: the consumer's first backoff (default 10).
    pub retry_base_s: u32,
}

impl HookConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let value = |name: &str| lookup::value(&get, name);
        let number = |name: &'static str, default: u64, max: u64| match value(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or(ConfigError {
                    variable: name,
                    reason: format!("expected a whole number from 1 to {max}, got {v:?}"),
                }),
        };
        Ok(HookConfig {
            secret_id: value("HOOK_SECRET_ID"),
            queue_url: value("HOOK_QUEUE_URL"),
            table_name: value("TABLE_NAME"),
            max_event_age_s: number(
                "HOOK_MAX_EVENT_AGE_SECONDS",
                DEFAULT_HOOK_MAX_EVENT_AGE_S as u64,
                86_400,
            )? as i64,
            retry_base_s: number("HOOK_RETRY_BASE_SECONDS", 10, 3600)? as u32,
        })
    }

    /// A variable the intake cannot start without.
    pub fn required(value: &Option<String>, name: &'static str) -> Result<String, ConfigError> {
        value.clone().ok_or_else(|| ConfigError::missing(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hook_functions_read_their_own_variables_and_refuse_a_malformed_number() {
        let env = crate::base::config::lookup::fixed;
        let c =
            HookConfig::from_lookup(env(&[("HOOK_QUEUE_URL", "q"), ("TABLE_NAME", "t")])).unwrap();
        assert_eq!(
            (
                c.queue_url.as_deref(),
                c.secret_id,
                c.max_event_age_s,
                c.retry_base_s
            ),
            (Some("q"), None, 1200, 10)
        );
        let bad = HookConfig::from_lookup(env(&[("HOOK_MAX_EVENT_AGE_SECONDS", "soon")]));
        assert_eq!(bad.unwrap_err().variable, "HOOK_MAX_EVENT_AGE_SECONDS");
        let bad = HookConfig::from_lookup(env(&[("HOOK_RETRY_BASE_SECONDS", "0")]));
        assert_eq!(bad.unwrap_err().variable, "HOOK_RETRY_BASE_SECONDS");
    }
}
