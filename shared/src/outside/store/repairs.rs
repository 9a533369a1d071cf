//! Repairs: what a flow could not undo or confirm before its deadline (a Keycloak user or session
//! that may exist without its local record, an edit Keycloak did not confirm), written down for the next sync run to finish. Kept a week
//! (TTL); a repair that is done or can no longer matter is deleted.

use crate::base::clock::EpochSecs;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::table::{n, s, sdk_error, Store, StoreError};
use crate::base::deadline::Bounded;

const REPAIR: &str = "REPAIR";
const KEPT_S: i64 = 7 * 24 * 3600;

/// Something Keycloak may hold that the store does not know.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RepairKind {
    /// A registration answered as failed: a Keycloak user with this username created at or after
    /// `since` must not live without its local record.
    KeycloakUser {
        username: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
    },
    /// A login answered as failed, or a session ended here that Keycloak could not be told of:
    /// this user's Keycloak sessions begun at or after `since` (and, if given, by `until`, of
    /// the client `client_id` alone, only `sid`) that the store has no live record of are ended.
    /// A failed login names its own window and client: it can only have made such a session,
    /// and a repair keyed by a typed username must never reach the user's other sessions.
    KeycloakSessions {
        /// Empty when `user_id` says who.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        username: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sid: Option<String>,
        /// Epoch ms by which the flow had ended (its deadline).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<i64>,
        /// The Keycloak client (`clientId`) the flow signed in with.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
    },
    /// An admin's edit whose Keycloak write was not confirmed: the user's record stays locked by
    /// `owner` until Keycloak is read back, once the write could have landed, and what Keycloak
    /// holds then is recorded (`Store::settle_edit`).
    KeycloakEdit { user_id: String, owner: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Repair {
    pub id: String,
    /// Epoch ms at which the flow that left it began.
    pub since: i64,
    #[serde(flatten)]
    pub kind: RepairKind,
}

fn key(id: &str) -> HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
    HashMap::from([("pk".into(), s(REPAIR)), ("sk".into(), s(id))])
}

impl Store {
    pub async fn put_repair(&self, since: i64, kind: RepairKind) -> Result<(), StoreError> {
        let repair = Repair {
            id: format!("{since:013}#{}", uuid::Uuid::new_v4()),
            since,
            kind,
        };
        let mut keys = key(&repair.id);
        // Kept from now: a repair's `since` may lie far back (a password reset's covers every
        // earlier session).
        keys.insert("expires_at".into(), n(EpochSecs::now().after(KEPT_S)));
        self.put_record(&repair, keys).await
    }

    /// Every open repair, oldest first.
    pub async fn repairs(&self) -> Result<Vec<Repair>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(REPAIR))
            .consistent_read(true)
            .send()
            .within_deadline()
            .await?
            .map_err(sdk_error)?;
        out.items
            .unwrap_or_default()
            .into_iter()
            .map(|i| serde_dynamo::from_item(i).map_err(|e| StoreError::Other(e.to_string())))
            .collect()
    }

    pub async fn delete_repair(&self, id: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(id)))
            .send()
            .within_deadline()
            .await?
            .map_err(sdk_error)?;
        Ok(())
    }
}
