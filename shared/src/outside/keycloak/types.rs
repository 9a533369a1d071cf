//! The Keycloak representations this project reads and writes: only the fields it uses, named as
//! Keycloak names them. Readers ignore unknown fields; writers send only what they set, because
//! Keycloak refuses unknown fields with a 400 (contract §0).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A token endpoint answer (contract §1.2).
#[derive(Clone, Deserialize)]
pub struct TokenSet {
    pub access_token: String,
    pub expires_in: u64,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub refresh_expires_in: u64,
    #[serde(default)]
    pub id_token: Option<String>,
    /// The user session id (`sid`); absent for client credentials.
    #[serde(default)]
    pub session_state: Option<String>,
    #[serde(default)]
    pub scope: String,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("expires_in", &self.expires_in)
            .field("refresh_expires_in", &self.refresh_expires_in)
            .field("session_state", &self.session_state)
            .finish_non_exhaustive()
    }
}

/// A member of a role or a group as the sync reads them: the id alone (a member page's other
/// fields are not kept, so a page of 25 000 holds 25 000 ids, not their representations).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Member {
    pub id: String,
}

/// A user as the admin API returns it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UserRepresentation {
    pub id: String,
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default)]
    pub email_verified: bool,
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub attributes: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub created_timestamp: i64,
    #[serde(default)]
    pub required_actions: Vec<String>,
}

impl UserRepresentation {
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }
}

/// The body of a user creation: what we set, nothing more.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewUser {
    pub username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// Always sent: Keycloak creates a *disabled* user when `enabled` is omitted.
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, Vec<String>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<PasswordCredential>,
}

/// `CredentialRepresentation` for a password: only `type`, `value`, `temporary` (keycloak#40152).
#[derive(Clone, Serialize)]
pub struct PasswordCredential {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub value: String,
    pub temporary: bool,
}

impl PasswordCredential {
    pub fn new(value: impl Into<String>, temporary: bool) -> Self {
        PasswordCredential {
            kind: "password",
            value: value.into(),
            temporary,
        }
    }
}

impl std::fmt::Debug for PasswordCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PasswordCredential(temporary: {})", self.temporary)
    }
}

/// A change to a user. `None` leaves a field as it is; for attributes, `Some(None)` removes one.
/// Applied by GET → merge → PUT of the complete representation, never a partial PUT.
#[derive(Clone, Debug, Default)]
pub struct UserUpdate {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub enabled: Option<bool>,
    pub email_verified: Option<bool>,
    pub attributes: BTreeMap<String, Option<Vec<String>>>,
}

impl UserUpdate {
    pub fn is_empty(&self) -> bool {
        self.email.is_none()
            && self.first_name.is_none()
            && self.last_name.is_none()
            && self.enabled.is_none()
            && self.email_verified.is_none()
            && self.attributes.is_empty()
    }

    /// Whether Keycloak's `rep` shows every field this update sets (the update was applied).
    pub fn shown_by(&self, rep: &UserRepresentation) -> bool {
        let same = |want: &Option<String>, have: &Option<String>| {
            want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
        };
        same(&self.email, &rep.email)
            && same(&self.first_name, &rep.first_name)
            && same(&self.last_name, &rep.last_name)
            && self.enabled.is_none_or(|e| e == rep.enabled)
            && self.email_verified.is_none_or(|v| v == rep.email_verified)
            && self.attributes.iter().all(|(name, want)| {
                let have = rep.attributes.get(name).filter(|v| !v.is_empty());
                have == want.as_ref().filter(|v| !v.is_empty())
            })
    }

    /// Merge into the representation read by GET; everything not named here is kept as read —
    /// except `enabled`, which is left out unless this update sets it: GET shows a user who is
    /// temporarily locked by brute-force detection as `enabled: false` (contract §4.1), and
    /// writing that back would disable them for good. Keycloak keeps the stored value of a root
    /// field the PUT leaves out.
    pub fn merge_into(&self, rep: &mut Value) {
        let Some(obj) = rep.as_object_mut() else {
            return;
        };
        obj.remove("enabled");
        for (key, value) in [
            ("email", &self.email),
            ("firstName", &self.first_name),
            ("lastName", &self.last_name),
        ] {
            if let Some(v) = value {
                obj.insert(key.into(), Value::String(v.clone()));
            }
        }
        for (key, value) in [
            ("enabled", self.enabled),
            ("emailVerified", self.email_verified),
        ] {
            if let Some(v) = value {
                obj.insert(key.into(), Value::Bool(v));
            }
        }
        let attrs = obj
            .entry("attributes")
            .or_insert_with(|| Value::Object(Default::default()));
        if !attrs.is_object() {
            *attrs = Value::Object(Default::default());
        }
        if let Some(map) = attrs.as_object_mut() {
            for (name, value) in &self.attributes {
                match value {
                    Some(v) => {
                        map.insert(name.clone(), Value::from(v.clone()));
                    }
                    None => {
                        map.remove(name);
                    }
                }
            }
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RoleRepresentation {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub composite: bool,
    #[serde(default)]
    pub client_role: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GroupRepresentation {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub sub_group_count: u64,
}

/// An online session of a user (`GET /users/{id}/sessions`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UserSessionRepresentation {
    pub id: String,
    pub user_id: String,
    #[serde(default)]
    pub ip_address: String,
    pub start: i64,
    pub last_access: i64,
    #[serde(default)]
    pub clients: BTreeMap<String, String>,
}

/// An admin event (`GET /admin-events`). `id` exists only on late 26.x servers.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AdminEvent {
    #[serde(default)]
    pub id: Option<String>,
    pub time: i64,
    pub operation_type: String,
    pub resource_type: String,
    #[serde(default)]
    pub resource_path: String,
    /// Who made the change.
    #[serde(default)]
    pub auth_details: Option<AuthDetails>,
    /// The representation sent, as JSON text (only with `adminEventsDetailsEnabled`).
    #[serde(default)]
    pub representation: Option<String>,
}

/// The author of an admin event: `userId` is the acting user (a service account's user for a
/// client's own calls), `clientId` the client's internal id.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuthDetails {
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
}

impl AdminEvent {
    /// The user id of a `users/{id}[/…]` resource path.
    pub fn user_id(&self) -> Option<&str> {
        self.resource_path
            .strip_prefix("users/")
            .map(|rest| rest.split('/').next().unwrap_or(rest))
            .filter(|id| !id.is_empty())
    }
}

/// A login ("user") event (`GET /events`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UserEvent {
    #[serde(default)]
    pub id: Option<String>,
    pub time: i64,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub user_id: Option<String>,
}

/// Filters of the event listings. Dates are epoch milliseconds (Keycloak 26.2+).
#[derive(Clone, Debug, Default)]
pub struct EventQuery {
    pub date_from_ms: Option<i64>,
    pub date_to_ms: Option<i64>,
    pub types: Vec<String>,
    pub first: u32,
    pub max: u32,
    pub ascending: bool,
}

impl EventQuery {
    pub(crate) fn params(&self, type_key: &str) -> Vec<(String, String)> {
        let mut p = vec![
            ("first".to_owned(), self.first.to_string()),
            ("max".to_owned(), self.max.max(1).to_string()),
            (
                "direction".to_owned(),
                if self.ascending { "asc" } else { "desc" }.to_owned(),
            ),
        ];
        if let Some(f) = self.date_from_ms {
            p.push(("dateFrom".into(), f.to_string()));
        }
        if let Some(t) = self.date_to_ms {
            p.push(("dateTo".into(), t.to_string()));
        }
        for t in &self.types {
            p.push((type_key.to_owned(), t.clone()));
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn update_merges_into_the_full_representation() {
        let mut rep = json!({"id": "1", "username": "a", "firstName": "A", "lastName": "B",
                             "attributes": {"title": ["x"], "phone": ["1"]}, "enabled": true});
        let mut u = UserUpdate {
            last_name: Some("C".into()),
            ..Default::default()
        };
        u.attributes.insert("title".into(), Some(vec!["y".into()]));
        u.attributes.insert("phone".into(), None);
        u.merge_into(&mut rep);
        assert_eq!(
            rep,
            json!({"id": "1", "username": "a", "firstName": "A", "lastName": "C",
                               "attributes": {"title": ["y"]}})
        );
    }

    #[test]
    fn a_locked_users_enabled_false_is_never_written_back() {
        // GET of a user in a brute-force lockout says enabled: false.
        let mut rep = json!({"id": "1", "username": "a", "enabled": false});
        UserUpdate {
            last_name: Some("C".into()),
            ..Default::default()
        }
        .merge_into(&mut rep);
        assert!(rep.get("enabled").is_none());
        let mut rep = json!({"id": "1", "username": "a", "enabled": true});
        UserUpdate {
            enabled: Some(false),
            ..Default::default()
        }
        .merge_into(&mut rep);
        assert_eq!(rep["enabled"], false, "an explicit change is written");
    }

    #[test]
    fn new_user_always_sends_enabled_and_never_empty_fields() {
        let body = serde_json::to_value(NewUser {
            username: "a".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(body, json!({"username": "a", "enabled": false}));
    }

    #[test]
    fn admin_event_names_its_user() {
        let e = AdminEvent {
            id: None,
            time: 0,
            operation_type: "ACTION".into(),
            resource_type: "USER".into(),
            resource_path: "users/abc/reset-password".into(),
            auth_details: None,
            representation: None,
        };
        assert_eq!(e.user_id(), Some("abc"));
    }

    #[test]
    fn token_set_debug_hides_tokens() {
        let t: TokenSet = serde_json::from_value(
            json!({"access_token": "SECRET-A", "refresh_token": "SECRET-R", "expires_in": 300}),
        )
        .unwrap();
        assert!(!format!("{t:?}").contains("SECRET"));
    }
}
