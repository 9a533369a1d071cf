//! The configuration every function reads from its environment once, at cold start (DESIGN §3).
//! A missing or malformed variable fails start-up with a message naming it.

use std::fmt;

#[derive(Clone, Debug)]
pub struct Config {
    /// Base URL without a trailing slash, e.g. `https://sso.example.com`.
    pub keycloak_url: String,
    pub keycloak_realm: String,
    pub keycloak_client_id: String,
    /// Secrets Manager id or ARN of `{"client_secret": "..."}`.
    pub keycloak_secret_id: String,
    pub table_name: String,
    pub admin_role: String,
    pub manager_role: String,
    /// Accepted `aud` (or `azp`) values of bearer tokens.
    pub jwt_audience: Vec<String>,
    pub sync_page_size: u32,
    pub sync_concurrency: usize,
    pub sync_max_deactivations: DeactivationGuard,
    /// The standard SDK override, used for local runs against moto.
    pub aws_endpoint_url: Option<String>,
    /// The bulk-sync function that `POST /admin/sync` starts.
    pub sync_function_name: String,
}

/// `SYNC_MAX_DEACTIVATIONS`, e.g. `50,5%`: a run may deactivate at most this many users, and at
/// most this share of the local active users; above either it needs approval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DeactivationGuard {
    pub absolute: u32,
    pub percent: f64,
}

impl DeactivationGuard {
    /// Whether `count` deactivations out of `active` local users stay within the guard.
    pub fn allows(&self, count: u64, active: u64) -> bool {
        count <= u64::from(self.absolute)
            && (count as f64) <= (active as f64) * self.percent / 100.0
    }
}

#[derive(Debug, PartialEq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration: {}: {}", self.variable, self.reason)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Build from any variable source (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let value = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let required = |name: &'static str| {
            value(name).ok_or(ConfigError {
                variable: name,
                reason: "required but not set".into(),
            })
        };
        let number =
            |name: &'static str, default: u64, min: u64, max: u64| -> Result<u64, ConfigError> {
                match value(name) {
                    None => Ok(default),
                    Some(v) => v
                        .parse::<u64>()
                        .ok()
                        .filter(|n| (min..=max).contains(n))
                        .ok_or(ConfigError {
                            variable: name,
                            reason: format!(
                                "expected a whole number from {min} to {max}, got {v:?}"
                            ),
                        }),
                }
            };
        let keycloak_url = required("KEYCLOAK_URL")?.trim_end_matches('/').to_owned();
        if !(keycloak_url.starts_with("https://") || keycloak_url.starts_with("http://")) {
            return Err(ConfigError {
                variable: "KEYCLOAK_URL",
                reason: format!("expected an http(s) URL, got {keycloak_url:?}"),
            });
        }
        let keycloak_client_id = required("KEYCLOAK_CLIENT_ID")?;
        let jwt_audience = value("JWT_AUDIENCE")
            .map(|v| {
                v.split(',')
                    .map(|a| a.trim().to_owned())
                    .filter(|a| !a.is_empty())
                    .collect()
            })
            .unwrap_or_else(|| vec![keycloak_client_id.clone()]);
        let guard = value("SYNC_MAX_DEACTIVATIONS").unwrap_or_else(|| "50,5%".into());
        Ok(Config {
            keycloak_url,
            keycloak_realm: required("KEYCLOAK_REALM")?,
            keycloak_secret_id: required("KEYCLOAK_SECRET_ID")?,
            table_name: required("TABLE_NAME")?,
            admin_role: value("ADMIN_ROLE").unwrap_or_else(|| "admin".into()),
            manager_role: value("MANAGER_ROLE").unwrap_or_else(|| "manager".into()),
            jwt_audience,
            sync_page_size: number("SYNC_PAGE_SIZE", 100, 1, 1000)? as u32,
            sync_concurrency: number("SYNC_CONCURRENCY", 4, 1, 64)? as usize,
            sync_max_deactivations: parse_guard(&guard).ok_or(ConfigError {
                variable: "SYNC_MAX_DEACTIVATIONS",
                reason: format!("expected \"<count>,<percent>%\" such as \"50,5%\", got {guard:?}"),
            })?,
            aws_endpoint_url: value("AWS_ENDPOINT_URL"),
            sync_function_name: value("SYNC_FUNCTION_NAME").unwrap_or_else(|| "bulk-sync".into()),
            keycloak_client_id,
        })
    }

    /// The realm's issuer URL, as Keycloak puts it in `iss`.
    pub fn issuer(&self) -> String {
        format!("{}/realms/{}", self.keycloak_url, self.keycloak_realm)
    }
}

fn parse_guard(v: &str) -> Option<DeactivationGuard> {
    let (abs, pct) = v.split_once(',')?;
    let percent: f64 = pct.trim().strip_suffix('%')?.trim().parse().ok()?;
    if !(0.0..=100.0).contains(&percent) {
        return None;
    }
    Some(DeactivationGuard {
        absolute: abs.trim().parse().ok()?,
        percent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const BASE: &[(&str, &str)] = &[
        ("KEYCLOAK_URL", "https://sso.example.com/"),
        ("KEYCLOAK_REALM", "demo"),
        ("KEYCLOAK_CLIENT_ID", "user-sync"),
        ("KEYCLOAK_SECRET_ID", "kc/secret"),
        ("TABLE_NAME", "users"),
    ];

    #[test]
    fn defaults_apply_when_only_required_variables_are_set() {
        let c = Config::from_lookup(env(BASE)).unwrap();
        assert_eq!(c.keycloak_url, "https://sso.example.com");
        assert_eq!(c.issuer(), "https://sso.example.com/realms/demo");
        assert_eq!(
            (c.admin_role.as_str(), c.manager_role.as_str()),
            ("admin", "manager")
        );
        assert_eq!(c.jwt_audience, vec!["user-sync"]);
        assert_eq!((c.sync_page_size, c.sync_concurrency), (100, 4));
        assert_eq!(
            c.sync_max_deactivations,
            DeactivationGuard {
                absolute: 50,
                percent: 5.0
            }
        );
    }

    #[test]
    fn a_missing_required_variable_is_named() {
        let partial: Vec<_> = BASE
            .iter()
            .copied()
            .filter(|(k, _)| *k != "TABLE_NAME")
            .collect();
        let err = Config::from_lookup(env(&partial)).unwrap_err();
        assert_eq!(err.variable, "TABLE_NAME");
        assert_eq!(
            err.to_string(),
            "configuration: TABLE_NAME: required but not set"
        );
    }

    #[test]
    fn malformed_numbers_and_guards_are_named() {
        for (var, bad) in [
            ("SYNC_PAGE_SIZE", "lots"),
            ("SYNC_CONCURRENCY", "0"),
            ("SYNC_MAX_DEACTIVATIONS", "50"),
            ("KEYCLOAK_URL", "sso"),
        ] {
            let mut pairs = BASE.to_vec();
            pairs.retain(|(k, _)| *k != var);
            pairs.push((var, bad));
            let err = Config::from_lookup(env(&pairs)).unwrap_err();
            assert_eq!(err.variable, var, "{bad}");
        }
    }

    #[test]
    fn audience_list_is_comma_separated() {
        let mut pairs = BASE.to_vec();
        pairs.push(("JWT_AUDIENCE", "a, b,,c"));
        assert_eq!(
            Config::from_lookup(env(&pairs)).unwrap().jwt_audience,
            vec!["a", "b", "c"]
        );
    }

    #[test]
    fn guard_allows_up_to_both_limits() {
        let g = DeactivationGuard {
            absolute: 50,
            percent: 5.0,
        };
        assert!(g.allows(5, 100));
        assert!(!g.allows(6, 100));
        assert!(g.allows(50, 10_000));
        assert!(!g.allows(51, 10_000));
    }
}
