//! `Config`: what every function that holds a Keycloak client reads from its environment once, at
//! cold start (DESIGN §3). A missing or malformed variable fails start-up with a message naming it.

use super::error::ConfigError;
use super::lookup;

#[derive(Clone, Debug)]
pub struct Config {
    /// Base URL without a trailing slash, e.g. `https://sso.example.com`.
    pub keycloak_url: String,
    pub keycloak_realm: String,
    /// The login client (password, refresh, logout grants; no service account):
    /// `KEYCLOAK_CLIENT_ID` and `KEYCLOAK_SECRET_ID`. Only the public auth functions have it.
    pub login_client: Option<ClientConfig>,
    /// The service client (a service account with realm-management roles):
    /// `KEYCLOAK_ADMIN_CLIENT_ID` and `KEYCLOAK_ADMIN_SECRET_ID`. Only registration, admin and
    /// sync functions have it.
    pub admin_client: Option<ClientConfig>,
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
    /// Realm roles only admins may act on, besides `admin` and `manager` (`PROTECTED_ROLES`).
    pub protected_roles: Vec<String>,
    /// The business attributes kept in the store and synced (`USER_ATTRIBUTES`).
    pub user_attributes: Vec<String>,
    /// How long audit records are kept (`AUDIT_RETENTION_DAYS`).
    pub audit_retention_days: u32,
    pub throttle: ThrottleLimits,
    /// Whether a login may say "account disabled" before Keycloak accepted the password
    /// (`REVEAL_ACCOUNT_STATE`); off, such a login is an ordinary `invalid_credentials`.
    pub reveal_account_state: bool,
    /// Whether `POST /auth/login` (the password grant) is offered (`PASSWORD_LOGIN_ENABLED`).
    pub password_login_enabled: bool,
    /// Clients whose access tokens `POST /auth/sync` takes, by `azp`
    /// (`TOKEN_SYNC_CLIENT_IDS`); empty, the route is off.
    pub token_sync_clients: Vec<String>,
    /// This API's `/auth/callback` URL, the login client's registered redirect URI
    /// (`CALLBACK_URL`); unset, the standard flow's routes are off.
    pub callback_url: Option<String>,
    /// Where a signed-in browser may be sent back to: app URLs, matched exactly
    /// (`SIGN_IN_REDIRECT_URIS`, comma list).
    pub sign_in_redirects: Vec<String>,
}

/// Abuse limits of the public auth routes, counted in DynamoDB per fixed time window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThrottleLimits {
    /// Failed logins per username per window (`LOGIN_MAX_FAILURES_PER_USER`).
    pub login_failures_per_user: u64,
    /// Failed logins per source IP per window (`LOGIN_MAX_FAILURES_PER_IP`).
    pub login_failures_per_ip: u64,
    /// `LOGIN_FAILURE_WINDOW_SECONDS`.
    pub login_window_s: i64,
    /// Registrations per source IP per window (`REGISTER_MAX_PER_IP`).
    pub registrations_per_ip: u64,
    /// `REGISTER_WINDOW_SECONDS`.
    pub register_window_s: i64,
}

impl Default for ThrottleLimits {
    fn default() -> Self {
        ThrottleLimits {
            login_failures_per_user: 10,
            login_failures_per_ip: 100,
            login_window_s: 15 * 60,
            registrations_per_ip: 20,
            register_window_s: 3600,
        }
    }
}

/// A confidential Keycloak client and where its secret is kept.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientConfig {
    pub client_id: String,
    /// Secrets Manager id or ARN of `{"client_secret": "..."}`.
    pub secret_id: String,
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

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Build from any variable source (the environment, or a map in tests). Table-like: one
    /// statement per variable, so it is longer than a function should be.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let value = |name: &str| lookup::value(&get, name);
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
        // A client id without its secret (or the other way round) is a half-configured client.
        let client = |id_var: &'static str, secret_var: &'static str| match (
            value(id_var),
            value(secret_var),
        ) {
            (Some(client_id), Some(secret_id)) => Ok(Some(ClientConfig {
                client_id,
                secret_id,
            })),
            (None, None) => Ok(None),
            (Some(_), None) => Err(ConfigError {
                variable: secret_var,
                reason: format!("required when {id_var} is set"),
            }),
            (None, Some(_)) => Err(ConfigError {
                variable: id_var,
                reason: format!("required when {secret_var} is set"),
            }),
        };
        let login_client = client("KEYCLOAK_CLIENT_ID", "KEYCLOAK_SECRET_ID")?;
        let admin_client = client("KEYCLOAK_ADMIN_CLIENT_ID", "KEYCLOAK_ADMIN_SECRET_ID")?;
        if login_client.is_none() && admin_client.is_none() {
            return Err(ConfigError::no_client());
        }
        let jwt_audience: Vec<String> = match value("JWT_AUDIENCE") {
            Some(v) => v
                .split(',')
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty())
                .collect(),
            None => login_client
                .as_ref()
                .map(|c| vec![c.client_id.clone()])
                .ok_or(ConfigError {
                    variable: "JWT_AUDIENCE",
                    reason: "required when KEYCLOAK_CLIENT_ID is not set".into(),
                })?,
        };
        let guard = value("SYNC_MAX_DEACTIVATIONS").unwrap_or_else(|| "50,5%".into());
        let list = |name: &str, default: &str| -> Vec<String> {
            value(name)
                .unwrap_or_else(|| default.to_owned())
                .split(',')
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty())
                .collect()
        };
        let user_attributes = list("USER_ATTRIBUTES", "organization,phone,department,title");
        if let Some(bad) = user_attributes.iter().find(|a| !is_attribute_name(a)) {
            return Err(ConfigError {
                variable: "USER_ATTRIBUTES",
                reason: format!(
                    "{bad:?} is not an attribute name (a letter, then letters, digits or _)"
                ),
            });
        }
        let defaults = ThrottleLimits::default();
        let throttle = ThrottleLimits {
            login_failures_per_user: number(
                "LOGIN_MAX_FAILURES_PER_USER",
                defaults.login_failures_per_user,
                1,
                1_000_000,
            )?,
            login_failures_per_ip: number(
                "LOGIN_MAX_FAILURES_PER_IP",
                defaults.login_failures_per_ip,
                1,
                1_000_000,
            )?,
            login_window_s: number(
                "LOGIN_FAILURE_WINDOW_SECONDS",
                defaults.login_window_s as u64,
                10,
                86_400,
            )? as i64,
            registrations_per_ip: number(
                "REGISTER_MAX_PER_IP",
                defaults.registrations_per_ip,
                1,
                1_000_000,
            )?,
            register_window_s: number(
                "REGISTER_WINDOW_SECONDS",
                defaults.register_window_s as u64,
                10,
                86_400,
            )? as i64,
        };
        let flag = |name: &'static str, default: bool| match value(name).as_deref() {
            None => Ok(default),
            Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(ConfigError {
                variable: name,
                reason: format!("expected true or false, got {other:?}"),
            }),
        };
        let reveal_account_state = flag("REVEAL_ACCOUNT_STATE", false)?;
        let password_login_enabled = flag("PASSWORD_LOGIN_ENABLED", true)?;
        let http_url = |name: &'static str| -> Result<Option<String>, ConfigError> {
            match value(name) {
                None => Ok(None),
                Some(v) if v.starts_with("https://") || v.starts_with("http://") => Ok(Some(v)),
                Some(v) => Err(ConfigError {
                    variable: name,
                    reason: format!("expected an http(s) URL, got {v:?}"),
                }),
            }
        };
        let callback_url = http_url("CALLBACK_URL")?;
        let sign_in_redirects = list("SIGN_IN_REDIRECT_URIS", "");
        if let Some(bad) = sign_in_redirects
            .iter()
            .find(|u| !(u.starts_with("https://") || u.starts_with("http://")))
        {
            return Err(ConfigError {
                variable: "SIGN_IN_REDIRECT_URIS",
                reason: format!("expected http(s) URLs, got {bad:?}"),
            });
        }
        Ok(Config {
            keycloak_url,
            keycloak_realm: required("KEYCLOAK_REALM")?,
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
            protected_roles: list("PROTECTED_ROLES", ""),
            user_attributes,
            audit_retention_days: number("AUDIT_RETENTION_DAYS", 400, 1, 3650)? as u32,
            throttle,
            reveal_account_state,
            password_login_enabled,
            token_sync_clients: list("TOKEN_SYNC_CLIENT_IDS", ""),
            callback_url,
            sign_in_redirects,
            login_client,
            admin_client,
        })
    }

    /// The clients whose sessions this service records, so whose back-channel logout tokens it
    /// takes (their `aud` is the receiving client): the login client and the token-sync ones.
    pub fn session_clients(&self) -> Vec<String> {
        let mut clients: Vec<String> = self
            .login_client
            .iter()
            .map(|c| c.client_id.clone())
            .collect();
        clients.extend(self.token_sync_clients.iter().cloned());
        clients
    }

    /// The realm's issuer URL, as Keycloak puts it in `iss`.
    pub fn issuer(&self) -> String {
        format!("{}/realms/{}", self.keycloak_url, self.keycloak_realm)
    }
}

/// Attribute names travel into DynamoDB expressions and Keycloak's user profile: keep them plain.
fn is_attribute_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64
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
    use std::collections::HashMap;

    use super::*;

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
        assert_eq!(
            c.login_client,
            Some(ClientConfig {
                client_id: "user-sync".into(),
                secret_id: "kc/secret".into()
            })
        );
        assert_eq!(c.admin_client, None);
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
    fn a_client_needs_its_secret_and_a_service_client_is_its_own() {
        let mut pairs = BASE.to_vec();
        pairs.push(("KEYCLOAK_ADMIN_CLIENT_ID", "user-sync-admin"));
        assert_eq!(
            Config::from_lookup(env(&pairs)).unwrap_err().variable,
            "KEYCLOAK_ADMIN_SECRET_ID"
        );
        pairs.push(("KEYCLOAK_ADMIN_SECRET_ID", "kc/admin"));
        let c = Config::from_lookup(env(&pairs)).unwrap();
        assert_eq!(c.admin_client.unwrap().client_id, "user-sync-admin");
        // A function with the service client only must say which audience it accepts.
        let admin_only: Vec<_> = pairs
            .iter()
            .copied()
            .filter(|(k, _)| !matches!(*k, "KEYCLOAK_CLIENT_ID" | "KEYCLOAK_SECRET_ID"))
            .collect();
        assert_eq!(
            Config::from_lookup(env(&admin_only)).unwrap_err().variable,
            "JWT_AUDIENCE"
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
    fn attribute_and_protected_role_lists_are_read() {
        let c = Config::from_lookup(env(BASE)).unwrap();
        assert_eq!(
            c.user_attributes,
            ["organization", "phone", "department", "title"]
        );
        assert!(c.protected_roles.is_empty());
        let mut pairs = BASE.to_vec();
        pairs.push(("USER_ATTRIBUTES", "organization, costCenter"));
        pairs.push(("PROTECTED_ROLES", "auditor,billing"));
        let c = Config::from_lookup(env(&pairs)).unwrap();
        assert_eq!(c.user_attributes, ["organization", "costCenter"]);
        assert_eq!(c.protected_roles, ["auditor", "billing"]);
        let mut bad = BASE.to_vec();
        bad.push(("USER_ATTRIBUTES", "cost-center"));
        assert_eq!(
            Config::from_lookup(env(&bad)).unwrap_err().variable,
            "USER_ATTRIBUTES"
        );
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
