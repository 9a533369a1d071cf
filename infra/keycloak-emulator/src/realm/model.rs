//! One realm's state: settings, clients, roles, groups, users and sessions, and the realm's
//! clock (its offset is how the tests move Keycloak's time).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{json, Value};

use crate::backchannel::Delivery;
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
    /// Ids of the realm's default groups (the export's `defaultGroups`, paths): every user
    /// created through the admin API joins them, as Keycloak's `JpaUserProvider#addUser` does.
    pub default_groups: Vec<String>,
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
    pub(super) listing: Mutex<Option<Arc<Vec<String>>>>,
}

/// A user as the admin API renders it, borrowed from the stored record and serialized directly.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserView<'a> {
    pub(super) id: &'a str,
    pub(super) username: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) first_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) last_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) email: Option<&'a str>,
    pub(super) email_verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) attributes: Option<BTreeMap<&'a str, &'a Vec<String>>>,
    pub(super) created_timestamp: i64,
    pub(super) enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) totp: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) disableable_credential_types: Option<[u8; 0]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) required_actions: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) not_before: Option<i64>,
    pub(super) access: Access,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Access {
    pub(super) manage_group_membership: bool,
    pub(super) view: bool,
    pub(super) map_roles: bool,
    pub(super) impersonate: bool,
    pub(super) manage: bool,
}

pub fn system_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Realm {
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
}
