//! A realm built from a Keycloak realm export (RealmRepresentation). What a real import creates by itself
//! (`realm-management` and `account` clients and their roles, `offline_access`, `uma_authorization`,
//! the default-roles role) is created here too when the export leaves it out.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::jwt::Keys;
use crate::profile::{PasswordPolicy, UserProfile};

use super::model::{
    new_id, system_now_ms, BrowserSettings, Client, Group, Realm, Role, Settings, User,
};

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
            default_groups: Vec::new(),
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
        realm.settings.default_groups = strings(source.get("defaultGroups"))
            .iter()
            .map(|p| {
                realm
                    .group_by_path(p)
                    .map(|g| g.id.clone())
                    .ok_or_else(|| format!("the default group {p} is not a group of the realm"))
            })
            .collect::<Result<_, _>>()?;
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
}
