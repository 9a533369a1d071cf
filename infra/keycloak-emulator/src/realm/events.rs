//! The realm's login and admin events, as stored (`enabledEventTypes`, details) and as the events
//! extension's webhooks deliver them.

use serde_json::{json, Value};

use super::model::{new_id, Realm};

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

impl Realm {
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
