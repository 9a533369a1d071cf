//! The message the webhook path hands to the sync: one user a delivered event names. The hook
//! produces it, the queue carries it, `apply_user_change` consumes it.

use serde::{Deserialize, Serialize};

use crate::keycloak::AdminEvent;

/// One user a delivered event names: what the queue carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserChange {
    /// The delivery's event id: the queue's deduplication key.
    pub event_id: String,
    pub user_id: String,
    /// When Keycloak recorded the event (epoch ms).
    pub time: i64,
    /// The event type as the source names it (`admin.USER-UPDATE`, `access.UPDATE_PROFILE`).
    pub kind: String,
    /// An admin event as the incremental sync reads it (author, representation): for the echo
    /// check only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminEvent>,
}
