//! One realm's state: settings, clients, roles, groups, users, sessions and events, built from a
//! Keycloak realm export (RealmRepresentation). What a real import creates by itself
//! (`realm-management` and `account` clients and their roles, `offline_access`, `uma_authorization`,
//! the default-roles role) is created here too when the export leaves it out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{json, Value};

use crate::backchannel::Delivery;
use crate::jwt::Keys;
use crate::profile::{PasswordPolicy, UserProfile};

#[derive(Clone, Debug)]
pub struct Role {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub composites_realm: Vec<String>,
    pub composites_client: BTreeMap<String, Vec<String>>,
    /// `None` for a realm role, the clientId for a client role.
    pub client: Option<String>,
    pub container_id: String,
}

impl Role {
    pub fn is_composite(&self) -> bool {
        !self.composites_realm.is_empty() || !self.composites_client.is_empty()
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "id": self.id, "name": self.name, "composite": self.is_composite(),
            "clientRole": self.client.is_some(), "containerId": self.container_id,
        });
        if let Some(d) = &self.description {
            v["description"] = json!(d);
        }
        v
    }
}

#[derive(Clone, Debug)]
pub struct Client {
    pub id: String,
    pub client_id: String,
    pub secret: Option<String>,
    pub enabled: bool,
    pub public: bool,
    pub bearer_only: bool,
    pub service_accounts: bool,
    pub direct_grants: bool,
    /// Extra `aud` values from `oidc-audience-mapper`s.
    pub audiences: Vec<String>,
    /// (user attribute, claim name) from `oidc-usermodel-attribute-mapper`s on access tokens.
    pub attribute_claims: Vec<(String, String)>,
    /// Claim name and full-path flag of an `oidc-group-membership-mapper` on access tokens.
    pub groups_claim: Option<(String, bool)>,
    /// The browser flows (`standard_flow`): `standardFlowEnabled`, the registered redirect URIs,
    /// the web origins (`+`: the redirect URIs' origins) and attributes.
    pub browser: BrowserSettings,
}

/// What a client says about the standard flow and logout (contract §9–§12).
#[derive(Clone, Debug, Default)]
pub struct BrowserSettings {
    pub standard_flow: bool,
    pub redirect_uris: Vec<String>,
    pub web_origins: Vec<String>,
    /// `pkce.code.challenge.method`: `S256`, `plain`, or not enforced.
    pub pkce_method: Option<String>,
    /// `post.logout.redirect.uris` (`##`-separated); empty or `+`: the redirect URIs.
    pub post_logout_redirect_uris: Vec<String>,
    pub frontchannel_logout: bool,
    pub backchannel_logout_url: Option<String>,
    pub backchannel_logout_session_required: bool,
    pub backchannel_logout_revoke_offline: bool,
}

#[derive(Clone, Debug)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub path: String,
    pub parent_id: Option<String>,
    pub realm_roles: Vec<String>,
    pub client_roles: BTreeMap<String, Vec<String>>,
    pub attributes: BTreeMap<String, Vec<String>>,
}

impl Group {
    pub fn to_json(&self, brief: bool) -> Value {
        let mut v = json!({"id": self.id, "name": self.name, "path": self.path, "subGroups": []});
        if let Some(p) = &self.parent_id {
            v["parentId"] = json!(p);
        }
        if !brief {
            v["attributes"] = json!(self.attributes);
            v["realmRoles"] = json!(self.realm_roles);
            v["clientRoles"] = json!(self.client_roles);
        }
        v
    }
}

#[derive(Clone, Debug, Default)]
pub struct User {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email_verified: bool,
    pub enabled: bool,
    pub created_ms: i64,
    pub attributes: BTreeMap<String, Vec<String>>,
    pub password_hash: Option<String>,
    pub required_actions: Vec<String>,
    pub realm_roles: BTreeSet<String>,
    pub client_roles: BTreeMap<String, BTreeSet<String>>,
    pub groups: BTreeSet<String>,
    /// Seconds; tokens issued before it are stale ("logout user" bumps it).
    pub not_before: i64,
    pub service_account_client_id: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Session {
    pub id: String,
    pub user_id: String,
    pub ip: String,
    pub start_ms: i64,
    pub last_access_ms: i64,
    /// client uuid → clientId
    pub clients: BTreeMap<String, String>,
    /// The issuer the session was opened under (its logout tokens carry it).
    pub issuer: String,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub enabled: bool,
    pub access_token_lifespan: i64,
    pub sso_idle: i64,
    pub sso_max: i64,
    pub password_policy: PasswordPolicy,
    pub duplicate_emails_allowed: bool,
    pub login_with_email_allowed: bool,
    pub edit_username_allowed: bool,
    pub verify_profile: bool,
    pub events_enabled: bool,
    pub events_expiration: Option<i64>,
    pub enabled_event_types: Vec<String>,
    pub events_listeners: Vec<String>,
    pub admin_events_enabled: bool,
    pub admin_events_details_enabled: bool,
    pub admin_events_expiration: Option<i64>,
    pub default_role: String,
    pub brute_force: crate::brute_force::Settings,
    /// `accessCodeLifespan`: how long an authorization code may be exchanged (seconds).
    pub access_code_lifespan: i64,
    /// `accessCodeLifespanLogin`: how long a login page stays usable (seconds).
    pub access_code_lifespan_login: i64,
    /// `accessCodeLifespanUserAction`: how long a required-action page stays usable (seconds).
    pub access_code_lifespan_user_action: i64,
}

pub struct Realm {
    pub name: String,
    pub id: String,
    pub settings: Settings,
    pub clients: Vec<Client>,
    pub realm_roles: BTreeMap<String, Role>,
    /// clientId → role name → role
    pub client_roles: BTreeMap<String, BTreeMap<String, Role>>,
    pub groups: BTreeMap<String, Group>,
    /// Users keyed by (lowercase) username: listings come out ordered by username for free.
    pub users: BTreeMap<String, User>,
    pub ids: HashMap<String, String>,
    pub emails: HashMap<String, String>,
    pub sessions: HashMap<String, Session>,
    pub user_sessions: HashMap<String, BTreeSet<String>>,
    pub events: Vec<Value>,
    pub admin_events: Vec<Value>,
    /// Webhook subscriptions of the events extension (`admin::webhooks`).
    pub webhooks: Vec<crate::webhook_sender::Webhook>,
    /// Browser logins in progress and issued authorization codes (`standard_flow`).
    pub logins: crate::logins::Logins,
    /// Back-channel logout tokens to send once the realm's lock is released, before the
    /// triggering request answers (`backchannel`).
    pub backchannel_outbox: Vec<Delivery>,
    pub profile: UserProfile,
    /// Login failures by user id (brute-force detection).
    pub login_failures: HashMap<String, crate::brute_force::Failures>,
    pub clock_offset_ms: i64,
    /// Usernames of the non-service-account users in listing order, rebuilt on demand after a
    /// change: offset paging (`first=99900`) then costs a slice, not a walk of the whole map.
    listing: Mutex<Option<Arc<Vec<String>>>>,
}

/// A user as the admin API renders it, borrowed from the stored record and serialized directly.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserView<'a> {
    id: &'a str,
    username: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    email_verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    attributes: Option<BTreeMap<&'a str, &'a Vec<String>>>,
    created_timestamp: i64,
    enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    totp: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disableable_credential_types: Option<[u8; 0]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    required_actions: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_before: Option<i64>,
    access: Access,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Access {
    manage_group_membership: bool,
    view: bool,
    map_roles: bool,
    impersonate: bool,
    manage: bool,
}

/// Login event types Keycloak saves when `enabledEventTypes` is empty (`saveByDefault=true`).
const SAVED_BY_DEFAULT: &[&str] = &[
    "LOGIN",
    "LOGIN_ERROR",
    "REGISTER",
    "REGISTER_ERROR",
    "LOGOUT",
    "LOGOUT_ERROR",
    "CODE_TO_TOKEN",
    "CODE_TO_TOKEN_ERROR",
    "CLIENT_LOGIN",
    "CLIENT_LOGIN_ERROR",
    "UPDATE_PROFILE",
    "UPDATE_PROFILE_ERROR",
    "UPDATE_EMAIL",
    "UPDATE_PASSWORD",
    "UPDATE_PASSWORD_ERROR",
    "UPDATE_CREDENTIAL",
    "REMOVE_CREDENTIAL",
    "VERIFY_EMAIL",
    "VERIFY_PROFILE",
    "DELETE_ACCOUNT",
    "DELETE_ACCOUNT_ERROR",
    "USER_DISABLED_BY_TEMPORARY_LOCKOUT",
    "USER_DISABLED_BY_PERMANENT_LOCKOUT",
];

const REALM_MANAGEMENT_ROLES: &[(&str, &[&str])] = &[
    ("create-client", &[]),
    ("impersonation", &[]),
    ("manage-authorization", &[]),
    ("manage-clients", &[]),
    ("manage-events", &[]),
    ("manage-identity-providers", &[]),
    ("manage-realm", &[]),
    ("manage-users", &[]),
    ("query-clients", &[]),
    ("query-groups", &[]),
    ("query-realms", &[]),
    ("query-users", &[]),
    ("view-authorization", &[]),
    ("view-clients", &["query-clients"]),
    ("view-events", &[]),
    ("view-identity-providers", &[]),
    ("view-realm", &[]),
    ("view-users", &["query-users", "query-groups"]),
];

const ACCOUNT_ROLES: &[(&str, &[&str])] = &[
    ("delete-account", &[]),
    ("manage-account", &["manage-account-links"]),
    ("manage-account-links", &[]),
    ("manage-consent", &["view-consent"]),
    ("view-applications", &[]),
    ("view-consent", &[]),
    ("view-groups", &[]),
    ("view-profile", &[]),
];

pub fn system_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn b(v: &Value, key: &str, default: bool) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(default)
}

fn i(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(|x| {
        x.as_i64()
            .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
    })
}

/// The strings of a JSON array (anything else: none).
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

fn string_map(v: Option<&Value>) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    if let Some(obj) = v.and_then(Value::as_object) {
        for (k, val) in obj {
            let vals = match val {
                Value::String(s) => vec![s.clone()],
                other => strings(Some(other)),
            };
            out.insert(k.clone(), vals);
        }
    }
    out
}

impl Realm {
    /// Build a realm from a realm export, under `name` (the export's own name when None).
    pub fn import(source: &Value, name: Option<&str>, keys: &Keys) -> Result<Realm, String> {
        let name = name
            .map(str::to_owned)
            .or_else(|| s(source, "realm"))
            .ok_or("the realm export has no \"realm\" name")?;
        let id = new_id();
        let default_role = source
            .pointer("/defaultRole/name")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("default-roles-{name}"));
        let attrs = source.get("attributes").cloned().unwrap_or(json!({}));
        let verify_profile = source
            .get("requiredActions")
            .and_then(Value::as_array)
            .map(|ras| {
                ras.iter().any(|ra| {
                    s(ra, "alias").as_deref() == Some("VERIFY_PROFILE") && b(ra, "enabled", true)
                })
            })
            .unwrap_or(true);
        let settings = Settings {
            enabled: b(source, "enabled", true),
            access_token_lifespan: i(source, "accessTokenLifespan").unwrap_or(300),
            sso_idle: i(source, "ssoSessionIdleTimeout").unwrap_or(1800),
            sso_max: i(source, "ssoSessionMaxLifespan").unwrap_or(36000),
            password_policy: PasswordPolicy::parse(
                source
                    .get("passwordPolicy")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
            ),
            duplicate_emails_allowed: b(source, "duplicateEmailsAllowed", false),
            login_with_email_allowed: b(source, "loginWithEmailAllowed", true),
            edit_username_allowed: b(source, "editUsernameAllowed", false),
            verify_profile,
            events_enabled: b(source, "eventsEnabled", false),
            events_expiration: i(source, "eventsExpiration"),
            enabled_event_types: strings(source.get("enabledEventTypes")),
            events_listeners: {
                let l = strings(source.get("eventsListeners"));
                if l.is_empty() {
                    vec!["jboss-logging".into()]
                } else {
                    l
                }
            },
            admin_events_enabled: b(source, "adminEventsEnabled", false),
            admin_events_details_enabled: b(source, "adminEventsDetailsEnabled", false),
            admin_events_expiration: i(&attrs, "adminEventsExpiration"),
            default_role: default_role.clone(),
            brute_force: crate::brute_force::Settings::from_export(source),
            access_code_lifespan: i(source, "accessCodeLifespan").unwrap_or(60),
            access_code_lifespan_login: i(source, "accessCodeLifespanLogin").unwrap_or(1800),
            access_code_lifespan_user_action: i(source, "accessCodeLifespanUserAction")
                .unwrap_or(300),
        };
        let profile = UserProfile::from_realm_export(source)?;
        let mut realm = Realm {
            name,
            id: id.clone(),
            settings,
            clients: Vec::new(),
            realm_roles: BTreeMap::new(),
            client_roles: BTreeMap::new(),
            groups: BTreeMap::new(),
            users: BTreeMap::new(),
            ids: HashMap::new(),
            emails: HashMap::new(),
            sessions: HashMap::new(),
            user_sessions: HashMap::new(),
            events: Vec::new(),
            admin_events: Vec::new(),
            webhooks: Vec::new(),
            logins: Default::default(),
            backchannel_outbox: Vec::new(),
            profile,
            clock_offset_ms: 0,
            listing: Mutex::new(None),
            login_failures: HashMap::new(),
        };
        realm.import_clients(source);
        realm.import_roles(source, &default_role);
        realm.import_groups(source.get("groups"), None, "");
        for u in source
            .get("users")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            realm.import_user(u, keys)?;
        }
        Ok(realm)
    }

    fn import_clients(&mut self, source: &Value) {
        for c in source
            .get("clients")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(client_id) = s(c, "clientId") else {
                continue;
            };
            let mut audiences = Vec::new();
            let mut attribute_claims = Vec::new();
            let mut groups_claim = None;
            for m in c
                .get("protocolMappers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let cfg = m.get("config").cloned().unwrap_or(json!({}));
                let in_access = s(&cfg, "access.token.claim").as_deref() != Some("false");
                match s(m, "protocolMapper").as_deref() {
                    Some("oidc-audience-mapper") if in_access => {
                        if let Some(a) = s(&cfg, "included.client.audience")
                            .or_else(|| s(&cfg, "included.custom.audience"))
                        {
                            audiences.push(a);
                        }
                    }
                    Some("oidc-usermodel-attribute-mapper") if in_access => {
                        if let (Some(attr), Some(claim)) =
                            (s(&cfg, "user.attribute"), s(&cfg, "claim.name"))
                        {
                            attribute_claims.push((attr, claim));
                        }
                    }
                    Some("oidc-group-membership-mapper") if in_access => {
                        let claim = s(&cfg, "claim.name").unwrap_or_else(|| "groups".into());
                        groups_claim =
                            Some((claim, s(&cfg, "full.path").as_deref() != Some("false")));
                    }
                    _ => {}
                }
            }
            let attributes = c.get("attributes").cloned().unwrap_or(json!({}));
            let flag = |name: &str| s(&attributes, name).as_deref() == Some("true");
            let browser = BrowserSettings {
                standard_flow: b(c, "standardFlowEnabled", true),
                redirect_uris: strings(c.get("redirectUris")),
                web_origins: strings(c.get("webOrigins")),
                pkce_method: s(&attributes, "pkce.code.challenge.method").filter(|m| !m.is_empty()),
                post_logout_redirect_uris: s(&attributes, "post.logout.redirect.uris")
                    .map(|v| {
                        v.split("##")
                            .filter(|u| !u.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
                frontchannel_logout: b(c, "frontchannelLogout", false),
                backchannel_logout_url: s(&attributes, "backchannel.logout.url")
                    .filter(|u| !u.is_empty()),
                backchannel_logout_session_required: flag("backchannel.logout.session.required"),
                backchannel_logout_revoke_offline: flag("backchannel.logout.revoke.offline.tokens"),
            };
            self.clients.push(Client {
                browser,
                groups_claim,
                id: s(c, "id").unwrap_or_else(new_id),
                secret: s(c, "secret"),
                enabled: b(c, "enabled", true),
                public: b(c, "publicClient", false),
                bearer_only: b(c, "bearerOnly", false),
                service_accounts: b(c, "serviceAccountsEnabled", false),
                direct_grants: b(c, "directAccessGrantsEnabled", false),
                audiences,
                attribute_claims,
                client_id,
            });
        }
        for (builtin, bearer_only, public) in [
            ("realm-management", true, false),
            ("account", false, true),
            ("admin-cli", false, true),
        ] {
            if !self.clients.iter().any(|c| c.client_id == builtin) {
                self.clients.push(Client {
                    id: new_id(),
                    client_id: builtin.into(),
                    secret: None,
                    enabled: true,
                    public,
                    bearer_only,
                    service_accounts: false,
                    direct_grants: builtin == "admin-cli",
                    audiences: vec![],
                    attribute_claims: vec![],
                    groups_claim: None,
                    browser: BrowserSettings {
                        standard_flow: builtin == "account",
                        ..Default::default()
                    },
                });
            }
        }
    }

    fn import_roles(&mut self, source: &Value, default_role: &str) {
        let realm_id = self.id.clone();
        let parse = |r: &Value, client: Option<&str>, container: &str| -> Option<Role> {
            let comps = r.get("composites");
            Some(Role {
                id: s(r, "id").unwrap_or_else(new_id),
                name: s(r, "name")?,
                description: s(r, "description"),
                composites_realm: strings(comps.and_then(|c| c.get("realm"))),
                composites_client: string_map(comps.and_then(|c| c.get("client"))),
                client: client.map(str::to_owned),
                container_id: container.to_owned(),
            })
        };
        for r in source
            .pointer("/roles/realm")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(role) = parse(r, None, &realm_id) {
                self.realm_roles.insert(role.name.clone(), role);
            }
        }
        if let Some(obj) = source.pointer("/roles/client").and_then(Value::as_object) {
            for (client_id, roles) in obj {
                let container = self
                    .client(client_id)
                    .map(|c| c.id.clone())
                    .unwrap_or_default();
                for r in roles.as_array().into_iter().flatten() {
                    if let Some(role) = parse(r, Some(client_id), &container) {
                        self.client_roles
                            .entry(client_id.clone())
                            .or_default()
                            .insert(role.name.clone(), role);
                    }
                }
            }
        }
        // What Keycloak creates for every realm, unless the export has it already.
        for (builtin, defs) in [
            ("realm-management", REALM_MANAGEMENT_ROLES),
            ("account", ACCOUNT_ROLES),
        ] {
            let container = self
                .client(builtin)
                .map(|c| c.id.clone())
                .unwrap_or_default();
            let roles = self.client_roles.entry(builtin.into()).or_default();
            for (name, composites) in defs {
                roles.entry((*name).into()).or_insert_with(|| Role {
                    id: new_id(),
                    name: (*name).into(),
                    description: Some(format!("${{role_{name}}}")),
                    composites_realm: vec![],
                    composites_client: if composites.is_empty() {
                        BTreeMap::new()
                    } else {
                        BTreeMap::from([(
                            builtin.to_owned(),
                            composites.iter().map(|c| (*c).to_owned()).collect(),
                        )])
                    },
                    client: Some(builtin.into()),
                    container_id: container.clone(),
                });
            }
            if builtin == "realm-management" && !roles.contains_key("realm-admin") {
                let all: Vec<String> = roles.keys().cloned().collect();
                roles.insert(
                    "realm-admin".into(),
                    Role {
                        id: new_id(),
                        name: "realm-admin".into(),
                        description: Some("${role_realm-admin}".into()),
                        composites_realm: vec![],
                        composites_client: BTreeMap::from([(builtin.to_owned(), all)]),
                        client: Some(builtin.into()),
                        container_id: container.clone(),
                    },
                );
            }
        }
        for (name, desc) in [
            ("offline_access", "${role_offline-access}"),
            ("uma_authorization", "${role_uma_authorization}"),
        ] {
            self.realm_roles.entry(name.into()).or_insert_with(|| Role {
                id: new_id(),
                name: name.into(),
                description: Some(desc.into()),
                composites_realm: vec![],
                composites_client: BTreeMap::new(),
                client: None,
                container_id: realm_id.clone(),
            });
        }
        self.realm_roles
            .entry(default_role.to_owned())
            .or_insert_with(|| Role {
                id: new_id(),
                name: default_role.to_owned(),
                description: Some("${role_default-roles}".into()),
                composites_realm: vec!["offline_access".into(), "uma_authorization".into()],
                composites_client: BTreeMap::from([(
                    "account".into(),
                    vec!["view-profile".into(), "manage-account".into()],
                )]),
                client: None,
                container_id: realm_id.clone(),
            });
    }

    fn import_groups(&mut self, groups: Option<&Value>, parent: Option<&str>, parent_path: &str) {
        for g in groups.and_then(Value::as_array).into_iter().flatten() {
            let Some(name) = s(g, "name") else { continue };
            let id = s(g, "id").unwrap_or_else(new_id);
            let path = format!("{parent_path}/{name}");
            self.groups.insert(
                id.clone(),
                Group {
                    id: id.clone(),
                    name,
                    path: path.clone(),
                    parent_id: parent.map(str::to_owned),
                    realm_roles: strings(g.get("realmRoles")),
                    client_roles: string_map(g.get("clientRoles")),
                    attributes: string_map(g.get("attributes")),
                },
            );
            self.import_groups(g.get("subGroups"), Some(&id), &path);
        }
    }

    fn import_user(&mut self, u: &Value, keys: &Keys) -> Result<(), String> {
        let username = s(u, "username")
            .ok_or("a user in the realm export has no username")?
            .to_lowercase();
        let password = u
            .get("credentials")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|c| s(c, "type").as_deref().unwrap_or("password") == "password")
            .and_then(|c| s(c, "value"));
        let groups = strings(u.get("groups"))
            .iter()
            .filter_map(|p| self.group_by_path(p).map(|g| g.id.clone()))
            .collect();
        let mut realm_roles: BTreeSet<String> = strings(u.get("realmRoles")).into_iter().collect();
        if realm_roles.is_empty() {
            realm_roles.insert(self.settings.default_role.clone());
        }
        let user = User {
            id: s(u, "id").unwrap_or_else(new_id),
            email: s(u, "email").map(|e| e.to_lowercase()),
            first_name: s(u, "firstName"),
            last_name: s(u, "lastName"),
            email_verified: b(u, "emailVerified", false),
            enabled: b(u, "enabled", false),
            created_ms: i(u, "createdTimestamp").unwrap_or_else(system_now_ms),
            attributes: string_map(u.get("attributes")),
            password_hash: password.map(|p| keys.hash_password(&p)),
            required_actions: strings(u.get("requiredActions")),
            realm_roles,
            client_roles: string_map(u.get("clientRoles"))
                .into_iter()
                .map(|(k, v)| (k, v.into_iter().collect()))
                .collect(),
            groups,
            not_before: i(u, "notBefore").unwrap_or(0),
            service_account_client_id: s(u, "serviceAccountClientId"),
            username,
        };
        self.insert_user(user);
        Ok(())
    }

    /// Whether brute-force detection holds the user back right now.
    pub fn temporarily_locked(&self, user_id: &str) -> bool {
        self.settings.brute_force.protected
            && self
                .login_failures
                .get(user_id)
                .is_some_and(|f| f.locked(self.now_ms()))
    }

    pub fn now_ms(&self) -> i64 {
        system_now_ms() + self.clock_offset_ms
    }

    pub fn now_s(&self) -> i64 {
        self.now_ms() / 1000
    }

    pub fn client(&self, client_id: &str) -> Option<&Client> {
        self.clients.iter().find(|c| c.client_id == client_id)
    }

    pub fn client_by_uuid(&self, id: &str) -> Option<&Client> {
        self.clients.iter().find(|c| c.id == id)
    }

    pub fn group_by_path(&self, path: &str) -> Option<&Group> {
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        self.groups.values().find(|g| g.path == path)
    }

    pub fn user(&self, id: &str) -> Option<&User> {
        self.ids.get(id).and_then(|u| self.users.get(u))
    }

    pub fn user_mut(&mut self, id: &str) -> Option<&mut User> {
        let username = self.ids.get(id)?;
        self.users.get_mut(username)
    }

    /// The service-account user of a client, by its link (`serviceAccountClientLink`), never by
    /// its name: a user who merely took the `service-account-` prefix is not one (contract §14).
    pub fn service_account_of(&self, client: &Client) -> Option<&User> {
        self.users
            .values()
            .find(|u| u.service_account_client_id.as_deref() == Some(client.client_id.as_str()))
    }

    /// `KeycloakModelUtils#findUserByNameOrEmail` (contract §13): with email login on, an
    /// identifier with `@` is looked up by email first; then by username.
    pub fn user_by_username_or_email(&self, login: &str) -> Option<&User> {
        let login = login.to_lowercase();
        let by_email = (self.settings.login_with_email_allowed && login.contains('@'))
            .then(|| self.emails.get(&login).and_then(|id| self.user(id)))
            .flatten();
        by_email.or_else(|| self.users.get(&login))
    }

    /// Non-service-account usernames in order (what an unfiltered listing pages over).
    pub fn listing_order(&self) -> Arc<Vec<String>> {
        let mut cached = self.listing.lock();
        Arc::clone(cached.get_or_insert_with(|| {
            Arc::new(
                self.users
                    .values()
                    .filter(|u| u.service_account_client_id.is_none())
                    .map(|u| u.username.clone())
                    .collect(),
            )
        }))
    }

    pub fn insert_user(&mut self, user: User) {
        *self.listing.get_mut() = None;
        self.ids.insert(user.id.clone(), user.username.clone());
        if let Some(e) = &user.email {
            self.emails.insert(e.clone(), user.id.clone());
        }
        self.users.insert(user.username.clone(), user);
    }

    /// Replace a user's record, keeping the username and email indexes right.
    pub fn replace_user(&mut self, user: User) {
        if let Some(old) = self.remove_user_record(&user.id) {
            debug_assert_eq!(old.id, user.id);
        }
        self.insert_user(user);
    }

    fn remove_user_record(&mut self, id: &str) -> Option<User> {
        *self.listing.get_mut() = None;
        let username = self.ids.remove(id)?;
        let user = self.users.remove(&username)?;
        if let Some(e) = &user.email {
            if self.emails.get(e).is_some_and(|owner| owner == id) {
                self.emails.remove(e);
            }
        }
        Some(user)
    }

    pub fn delete_user(&mut self, id: &str) -> Option<User> {
        let user = self.remove_user_record(id)?;
        self.end_user_sessions(id);
        Some(user)
    }

    pub fn end_user_sessions(&mut self, user_id: &str) {
        if let Some(sids) = self.user_sessions.remove(user_id) {
            for sid in sids {
                self.sessions.remove(&sid);
            }
        }
    }

    pub fn end_session(&mut self, sid: &str) -> Option<Session> {
        let session = self.sessions.remove(sid)?;
        if let Some(set) = self.user_sessions.get_mut(&session.user_id) {
            set.remove(sid);
        }
        Some(session)
    }

    /// End a session the way a logout does (end-session, refresh-token logout, an admin's
    /// session delete): its clients' back-channel logout tokens go to the outbox.
    pub fn log_out_session(&mut self, sid: &str, fallback_issuer: &str) -> Option<Session> {
        let session = self.end_session(sid)?;
        let deliveries = self.logout_deliveries(&session, fallback_issuer);
        self.backchannel_outbox.extend(deliveries);
        Some(session)
    }

    /// The deliveries for `session`, just ended: one per client of the session that wants them.
    fn logout_deliveries(&self, session: &Session, fallback_issuer: &str) -> Vec<Delivery> {
        let now = self.now_s();
        let iss = if session.issuer.is_empty() {
            fallback_issuer
        } else {
            &session.issuer
        };
        session
            .clients
            .keys()
            .filter_map(|uuid| self.client_by_uuid(uuid))
            .filter(|c| c.enabled && !c.browser.frontchannel_logout)
            .filter_map(|c| {
                let url = c.browser.backchannel_logout_url.clone()?;
                let mut events = json!({ crate::backchannel::EVENT: {} });
                if c.browser.backchannel_logout_revoke_offline {
                    events["revoke_offline_access"] = json!(true);
                }
                let mut claims = json!({
                    "iat": now, "exp": now + crate::backchannel::LIFETIME_S, "jti": new_id(), "iss": iss,
                    "aud": c.client_id, "sub": session.user_id, "typ": "Logout", "events": events,
                });
                if c.browser.backchannel_logout_session_required {
                    claims["sid"] = json!(session.id);
                }
                Some(Delivery { url, claims })
            })
            .collect()
    }

    /// An admin's "log the user out": every session, each with its back-channel logout.
    pub fn log_out_user(&mut self, user_id: &str, fallback_issuer: &str) {
        let sids: Vec<String> = self
            .user_sessions
            .get(user_id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for sid in sids {
            self.log_out_session(&sid, fallback_issuer);
        }
    }

    /// The session if it is still alive under the realm's idle and max lifetimes; an expired one
    /// is removed, as Keycloak's expiration does.
    pub fn live_session(&mut self, sid: &str) -> Option<&mut Session> {
        let now = self.now_ms();
        let (idle, max) = (self.settings.sso_idle * 1000, self.settings.sso_max * 1000);
        let expired = {
            let s = self.sessions.get(sid)?;
            now > s.last_access_ms + idle || now > s.start_ms + max
        };
        if expired {
            self.end_session(sid);
            return None;
        }
        self.sessions.get_mut(sid)
    }

    pub fn session_expiry_s(&self, session: &Session) -> i64 {
        let idle = session.last_access_ms / 1000 + self.settings.sso_idle;
        let max = session.start_ms / 1000 + self.settings.sso_max;
        idle.min(max)
    }

    pub fn create_session(&mut self, user_id: &str, client: &Client, ip: &str) -> String {
        let now = self.now_ms();
        let sid = new_id();
        self.sessions.insert(
            sid.clone(),
            Session {
                id: sid.clone(),
                user_id: user_id.to_owned(),
                ip: ip.to_owned(),
                start_ms: now,
                last_access_ms: now,
                clients: BTreeMap::from([(client.id.clone(), client.client_id.clone())]),
                issuer: String::new(),
            },
        );
        self.user_sessions
            .entry(user_id.to_owned())
            .or_default()
            .insert(sid.clone());
        sid
    }

    /// Effective roles: direct and group roles, composites expanded.
    /// Returns realm role names and clientId → client role names.
    pub fn effective_roles(
        &self,
        user: &User,
    ) -> (BTreeSet<String>, BTreeMap<String, BTreeSet<String>>) {
        let mut realm: BTreeSet<String> = BTreeSet::new();
        let mut clients: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut todo: Vec<(Option<String>, String)> =
            user.realm_roles.iter().map(|r| (None, r.clone())).collect();
        for (c, names) in &user.client_roles {
            todo.extend(names.iter().map(|n| (Some(c.clone()), n.clone())));
        }
        for gid in &user.groups {
            let mut next = Some(gid.clone());
            while let Some(g) = next.and_then(|id| self.groups.get(&id)) {
                todo.extend(g.realm_roles.iter().map(|r| (None, r.clone())));
                for (c, names) in &g.client_roles {
                    todo.extend(names.iter().map(|n| (Some(c.clone()), n.clone())));
                }
                next = g.parent_id.clone();
            }
        }
        while let Some((client, name)) = todo.pop() {
            let role = match &client {
                None => {
                    if !realm.insert(name.clone()) {
                        continue;
                    }
                    self.realm_roles.get(&name)
                }
                Some(c) => {
                    if !clients.entry(c.clone()).or_default().insert(name.clone()) {
                        continue;
                    }
                    self.client_roles.get(c).and_then(|m| m.get(&name))
                }
            };
            if let Some(role) = role {
                todo.extend(role.composites_realm.iter().map(|r| (None, r.clone())));
                for (c, names) in &role.composites_client {
                    todo.extend(names.iter().map(|n| (Some(c.clone()), n.clone())));
                }
            }
        }
        (realm, clients)
    }

    /// The user as the admin API shows it. `access` reflects what the caller may do.
    pub fn user_view<'a>(&'a self, u: &'a User, brief: bool, can_manage: bool) -> UserView<'a> {
        let attributes = (!brief)
            .then(|| self.profile.visible_attributes(&u.attributes))
            .filter(|a| !a.is_empty());
        UserView {
            id: &u.id,
            username: &u.username,
            first_name: u.first_name.as_deref(),
            last_name: u.last_name.as_deref(),
            email: u.email.as_deref(),
            email_verified: u.email_verified,
            attributes,
            created_timestamp: u.created_ms,
            enabled: u.enabled,
            totp: (!brief).then_some(false),
            disableable_credential_types: (!brief).then_some([]),
            required_actions: (!brief).then_some(u.required_actions.as_slice()),
            not_before: (!brief).then_some(u.not_before),
            access: Access {
                manage_group_membership: can_manage,
                view: true,
                map_roles: can_manage,
                impersonate: false,
                manage: can_manage,
            },
        }
    }

    pub fn user_json(&self, u: &User, brief: bool, can_manage: bool) -> Value {
        serde_json::to_value(self.user_view(u, brief, can_manage)).unwrap_or(Value::Null)
    }

    fn event_saved(&self, kind: &str) -> bool {
        if !self.settings.events_enabled {
            return false;
        }
        if self.settings.enabled_event_types.is_empty() {
            SAVED_BY_DEFAULT.contains(&kind)
        } else {
            self.settings.enabled_event_types.iter().any(|t| t == kind)
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn login_event(
        &mut self,
        kind: &str,
        client_id: Option<&str>,
        user_id: Option<&str>,
        session_id: Option<&str>,
        ip: &str,
        error: Option<&str>,
        details: Value,
    ) {
        self.webhook_access_event(kind, client_id, user_id, session_id, ip, error, &details);
        if !self.event_saved(kind) {
            return;
        }
        let mut e = json!({"id": new_id(), "time": self.now_ms(), "type": kind, "realmId": self.id, "ipAddress": ip});
        for (k, v) in [
            ("clientId", client_id),
            ("userId", user_id),
            ("sessionId", session_id),
            ("error", error),
        ] {
            if let Some(v) = v {
                e[k] = json!(v);
            }
        }
        if details.as_object().is_some_and(|d| !d.is_empty()) {
            e["details"] = details;
        }
        self.events.push(e);
    }

    pub fn admin_event(
        &mut self,
        auth: &AuthDetails,
        operation: &str,
        resource_type: &str,
        path: &str,
        representation: Option<Value>,
    ) {
        self.webhook_admin_event(
            auth,
            operation,
            resource_type,
            path,
            representation.as_ref(),
        );
        if !self.settings.admin_events_enabled {
            return;
        }
        let mut e = json!({
            "id": new_id(), "time": self.now_ms(), "realmId": self.id,
            "authDetails": {"realmId": self.id, "clientId": auth.client_uuid, "userId": auth.user_id, "ipAddress": auth.ip},
            "operationType": operation, "resourceType": resource_type, "resourcePath": path,
        });
        if self.settings.admin_events_details_enabled {
            if let Some(rep) = representation {
                e["representation"] = json!(rep.to_string());
            }
        }
        self.admin_events.push(e);
    }
}

impl Realm {
    /// The events extension's unified event for an admin event (listeners get every event,
    /// stored or not; the representation only with admin event details on, as Keycloak gives it).
    fn webhook_admin_event(
        &self,
        auth: &AuthDetails,
        operation: &str,
        resource_type: &str,
        path: &str,
        representation: Option<&Value>,
    ) {
        let mut e = json!({
            "time": self.now_ms(), "realmId": self.name,
            "authDetails": {"realmId": self.name, "clientId": auth.client_uuid, "userId": auth.user_id, "ipAddress": auth.ip},
            "resourceType": resource_type, "operationType": operation, "resourcePath": path,
            "type": format!("admin.{resource_type}-{operation}"), "details": {},
        });
        if let Some(user) = path.strip_prefix("users/").filter(|id| !id.contains('/')) {
            e["details"]["userId"] = json!(user);
            if let Some(u) = self.user(user) {
                e["details"]["username"] = json!(u.username);
            }
        }
        if self.settings.admin_events_details_enabled {
            if let Some(rep) = representation {
                e["representation"] = json!(rep.to_string());
            }
        }
        crate::webhook_sender::dispatch(&self.settings.events_listeners, &self.webhooks, &e);
    }

    #[allow(clippy::too_many_arguments)]
    fn webhook_access_event(
        &self,
        kind: &str,
        client_id: Option<&str>,
        user_id: Option<&str>,
        session_id: Option<&str>,
        ip: &str,
        error: Option<&str>,
        details: &Value,
    ) {
        let mut e = json!({
            "time": self.now_ms(), "realmId": self.id, "type": format!("access.{kind}"),
            "authDetails": {"realmId": self.name, "clientId": client_id, "userId": user_id,
                            "sessionId": session_id, "ipAddress": ip},
            "details": if details.is_object() { details.clone() } else { json!({}) },
        });
        if let Some(error) = error {
            e["error"] = json!(error);
        }
        crate::webhook_sender::dispatch(&self.settings.events_listeners, &self.webhooks, &e);
    }
}

/// Who made an admin call, for admin events.
#[derive(Clone, Debug, Default)]
pub struct AuthDetails {
    pub client_uuid: String,
    pub user_id: String,
    pub ip: String,
}
