//! The webhook format of Phase Two's `keycloak-events` extension, behind the `EventFormat` trait
//! any other sender's format would implement.

use serde::Deserialize;

use crate::error::{Error, ProblemCode};
use crate::features::sync::UserChange;
use crate::outside::keycloak::{AdminEvent, AuthDetails};

use super::signature::deduplication_id;

/// A webhook format: the body of one delivery to the change it means for a user, if any.
pub trait EventFormat {
    /// `Ok(None)`: a well-formed event that does not concern a user's synced fields (a login, a
    /// client change): acknowledged and dropped.
    fn user_change(&self, body: &[u8]) -> Result<Option<UserChange>, Error>;
}

/// The webhook format of Phase Two's `keycloak-events` extension (`ext-event-webhook`): one JSON
/// event per delivery, admin and user events unified, `type` prefixed `admin.` or `access.`.
pub struct PhaseTwo;

/// The unified event, as far as a user's synced fields care.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PhaseTwoEvent {
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    time: i64,
    #[serde(default)]
    auth_details: Option<PhaseTwoAuth>,
    #[serde(default)]
    resource_type: Option<String>,
    #[serde(default)]
    operation_type: Option<String>,
    #[serde(default)]
    resource_path: Option<String>,
    #[serde(default)]
    representation: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PhaseTwoAuth {
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
}

/// Admin resources whose events change a user's synced fields (the resource path names the user).
const ADMIN_RESOURCES: [&str; 3] = ["USER", "REALM_ROLE_MAPPING", "GROUP_MEMBERSHIP"];

/// User (login) events that change the user's own synced fields; logins, logouts and token
/// events change nothing the store holds.
const ACCESS_TYPES: [&str; 5] = [
    "REGISTER",
    "UPDATE_PROFILE",
    "UPDATE_EMAIL",
    "VERIFY_EMAIL",
    "DELETE_ACCOUNT",
];

impl EventFormat for PhaseTwo {
    fn user_change(&self, body: &[u8]) -> Result<Option<UserChange>, Error> {
        let e: PhaseTwoEvent = serde_json::from_slice(body).map_err(|err| Error::BadRequest {
            code: ProblemCode::InvalidEvent,
            detail: format!("not a keycloak-events webhook event: {err}"),
        })?;
        // The extension sets `uid` per delivery (kept across its retries); `id` where the
        // server has one; failing both, the body itself identifies the delivery.
        let event_id = e
            .uid
            .clone()
            .or(e.id.clone())
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| deduplication_id(&String::from_utf8_lossy(body)));
        let author = e.auth_details.as_ref();
        if let Some(kind) = e.kind.strip_prefix("admin.") {
            let resource = e.resource_type.clone().unwrap_or_default();
            if !ADMIN_RESOURCES.contains(&resource.as_str()) {
                return Ok(None);
            }
            let admin = AdminEvent {
                id: Some(event_id.clone()),
                time: e.time,
                operation_type: e.operation_type.clone().unwrap_or_default(),
                resource_type: resource,
                resource_path: e.resource_path.clone().unwrap_or_default(),
                auth_details: author.map(|a| AuthDetails {
                    user_id: a.user_id.clone(),
                    client_id: a.client_id.clone(),
                }),
                representation: e.representation.clone(),
            };
            let Some(user_id) = admin.user_id().map(str::to_owned) else {
                return Ok(None);
            };
            return Ok(Some(UserChange {
                event_id,
                user_id,
                time: e.time,
                kind: format!("admin.{kind}"),
                admin: Some(admin),
            }));
        }
        if let Some(kind) = e.kind.strip_prefix("access.") {
            let user_id = author.and_then(|a| a.user_id.clone());
            return Ok(match user_id {
                Some(user_id) if ACCESS_TYPES.contains(&kind) && !user_id.is_empty() => {
                    Some(UserChange {
                        event_id,
                        user_id,
                        time: e.time,
                        kind: e.kind.clone(),
                        admin: None,
                    })
                }
                _ => None,
            });
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const USER: &str = "0a1b2c3d-4e5f-6789-abcd-ef0123456789";

    fn change(event: Value) -> Option<UserChange> {
        PhaseTwo.user_change(event.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn an_admin_user_update_names_the_user_and_keeps_its_author_for_the_echo_check() {
        let c = change(json!({
            "uid": "e-1", "type": "admin.USER-UPDATE", "time": 1000, "realmId": "demo",
            "resourceType": "USER", "operationType": "UPDATE", "resourcePath": format!("users/{USER}"),
            "representation": "{\"firstName\":\"A\"}",
            "authDetails": {"realmId": "master", "clientId": "c-uuid", "userId": "sa-uuid", "ipAddress": "1.2.3.4"},
            "details": {"userId": USER}
        }))
        .unwrap();
        assert_eq!(
            (c.event_id.as_str(), c.user_id.as_str(), c.time),
            ("e-1", USER, 1000)
        );
        let admin = c.admin.unwrap();
        assert_eq!(
            admin.auth_details.unwrap().user_id.as_deref(),
            Some("sa-uuid")
        );
        assert_eq!(
            admin.representation.as_deref(),
            Some("{\"firstName\":\"A\"}")
        );
    }

    #[test]
    fn role_mapping_and_group_membership_events_name_the_user_of_their_path() {
        for (resource, path) in [
            (
                "REALM_ROLE_MAPPING",
                format!("users/{USER}/role-mappings/realm"),
            ),
            ("GROUP_MEMBERSHIP", format!("users/{USER}/groups/g-1")),
        ] {
            let c = change(
                json!({"uid": "e", "type": format!("admin.{resource}-CREATE"),
                "resourceType": resource, "operationType": "CREATE", "resourcePath": path}),
            );
            assert_eq!(c.unwrap().user_id, USER, "{resource}");
        }
    }

    #[test]
    fn profile_changes_by_the_user_name_them_and_logins_are_dropped() {
        let profile = change(
            json!({"uid": "e", "type": "access.UPDATE_PROFILE", "time": 5,
            "authDetails": {"userId": USER, "clientId": "account"}}),
        );
        assert_eq!(profile.unwrap().user_id, USER);
        for dropped in [
            json!({"uid": "e", "type": "access.LOGIN", "authDetails": {"userId": USER}}),
            json!({"uid": "e", "type": "admin.CLIENT-UPDATE", "resourceType": "CLIENT", "resourcePath": "clients/x"}),
            json!({"uid": "e", "type": "admin.REALM_ROLE-UPDATE", "resourceType": "REALM_ROLE", "resourcePath": "roles/x"}),
            json!({"uid": "e", "type": "admin.USER-CREATE", "resourceType": "USER", "resourcePath": "users"}),
            json!({"uid": "e", "type": "system.ORG-CREATE"}),
        ] {
            assert_eq!(change(dropped.clone()), None, "{dropped}");
        }
    }

    #[test]
    fn an_event_without_uid_or_id_is_identified_by_its_body() {
        let event = json!({"type": "access.UPDATE_EMAIL", "authDetails": {"userId": USER}});
        let a = change(event.clone()).unwrap();
        let b = change(event).unwrap();
        assert_eq!(a.event_id, b.event_id);
        assert_eq!(a.event_id.len(), 64);
    }

    #[test]
    fn a_body_that_is_not_an_event_is_a_bad_request() {
        for body in [&b"not json"[..], br#"{"uid":"x"}"#, br#"[1,2]"#] {
            assert!(matches!(
                PhaseTwo.user_change(body),
                Err(Error::BadRequest { .. })
            ));
        }
    }
}
