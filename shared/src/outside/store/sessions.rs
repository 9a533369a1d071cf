//! Session records: one per Keycloak session (`sid`), under the user's partition. The refresh token
//! itself is never stored, only its SHA-256; `expires_at` is the table's TTL attribute.

use crate::base::clock::EpochSecs;
use crate::base::deadline::Bounded;
use std::collections::HashMap;

use aws_lc_rs::digest;
use aws_sdk_dynamodb::types::ReturnValue;
use serde::{Deserialize, Serialize};

use super::table::{n, s, sdk_error, user_pk, Item, Store, StoreError, Update};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub user_id: String,
    pub sid: String,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refreshed_at: Option<i64>,
    #[serde(default)]
    pub refresh_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// SHA-256 (hex) of the current refresh token.
    pub refresh_token_sha256: String,
    /// SHA-256 of the token the last refresh replaced: presenting it again is reuse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_refresh_token_sha256: Option<String>,
    /// Epoch seconds; DynamoDB's TTL removes the record some time after.
    pub expires_at: EpochSecs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<SessionEnd>,
    /// The Keycloak client the session's tokens belong to, when it is not the login client: a
    /// public app whose tokens `POST /auth/sync` took (its refresh and logout go as that client).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// When the app last told this service of the session (`POST /auth/sync` again), epoch ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_at: Option<i64>,
}

/// Why a session ended (stored and shown in snake_case: `ended_in_keycloak`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEnd {
    Logout,
    Revoked,
    /// Keycloak no longer honours it (expired, admin logout, user disabled or deleted there).
    EndedInKeycloak,
    UserDeactivated,
    /// A replaced refresh token was presented again: whoever holds it is not to be trusted.
    RefreshTokenReused,
    /// An admin set a new password: whoever signed in with the old one is signed out.
    PasswordReset,
}

impl SessionEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionEnd::Logout => "logout",
            SessionEnd::Revoked => "revoked",
            SessionEnd::EndedInKeycloak => "ended_in_keycloak",
            SessionEnd::UserDeactivated => "user_deactivated",
            SessionEnd::RefreshTokenReused => "refresh_token_reused",
            SessionEnd::PasswordReset => "password_reset",
        }
    }
}

/// SHA-256 of a token, hex: what the store keeps instead of the token.
pub fn token_hash(token: &str) -> String {
    hex::encode(digest::digest(&digest::SHA256, token.as_bytes()))
}

impl Session {
    pub fn is_active(&self, now: EpochSecs) -> bool {
        self.ended_at.is_none() && self.expires_at > now
    }

    pub fn to_item(&self) -> Result<Item, StoreError> {
        let mut item: Item =
            serde_dynamo::to_item(self).map_err(|e| StoreError::Other(e.to_string()))?;
        item.insert("pk".into(), s(user_pk(&self.user_id)));
        item.insert("sk".into(), s(format!("SESSION#{}", self.sid)));
        Ok(item)
    }

    fn from_item(item: Item) -> Result<Self, StoreError> {
        serde_dynamo::from_item(item)
            .map_err(|e| StoreError::Other(format!("bad session item: {e}")))
    }
}

impl Store {
    fn session_key(
        &self,
        user_id: &str,
        sid: &str,
    ) -> HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
        HashMap::from([
            ("pk".into(), s(user_pk(user_id))),
            ("sk".into(), s(format!("SESSION#{sid}"))),
        ])
    }

    pub async fn put_session(&self, session: &Session) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(session.to_item()?))
            .send()
            .within_deadline()
            .await?
            .map_err(sdk_error)?;
        Ok(())
    }

    pub async fn get_session(
        &self,
        user_id: &str,
        sid: &str,
    ) -> Result<Option<Session>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(self.session_key(user_id, sid)))
            .consistent_read(true)
            .send()
            .within_deadline()
            .await?
            .map_err(sdk_error)?;
        out.item.map(Session::from_item).transpose()
    }

    /// A refresh of a live session by its current token (`presented`, a SHA-256): the new token's
    /// hash becomes current, the presented one previous. `VersionConflict` when the session moved
    /// on (another refresh used the token first) or ended meanwhile — an ended session never comes
    /// back; `NotFound` when there is no such session.
    pub async fn record_refresh(
        &self,
        user_id: &str,
        sid: &str,
        presented: &str,
        new_token: &str,
        expires_at: EpochSecs,
        now: i64,
    ) -> Result<Session, StoreError> {
        let mut u = Update::default();
        u.set("refresh_token_sha256", s(token_hash(new_token)));
        u.set("previous_refresh_token_sha256", s(presented));
        u.set("expires_at", n(expires_at));
        u.set("refreshed_at", n(now));
        let (count, zero, one) = (u.name("refresh_count"), u.value(n(0)), u.value(n(1)));
        u.set_expr(
            "refresh_count",
            format!("if_not_exists({count}, {zero}) + {one}"),
        );
        let (ended, current, presented_v) = (
            u.name("ended_at"),
            u.name("refresh_token_sha256"),
            u.value(s(presented)),
        );
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.session_key(user_id, sid)))
            .update_expression(u.expression())
            .condition_expression(format!(
                "attribute_exists(pk) AND attribute_not_exists({ended}) AND {current} = {presented_v}"
            ))
            .set_expression_attribute_names(Some(u.names))
            .set_expression_attribute_values(Some(u.values))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            )
            .send()
            .within_deadline()
            .await?;
        match result {
            Ok(out) => Session::from_item(out.attributes.unwrap_or_default()),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c)) => {
                    if c.item.as_ref().is_some_and(|i| !i.is_empty()) {
                        Err(StoreError::VersionConflict)
                    } else {
                        Err(StoreError::NotFound)
                    }
                }
                _ => Err(sdk_error(e)),
            },
        }
    }

    /// A session and its user's record, read together (one round trip).
    pub async fn session_and_user(
        &self,
        user_id: &str,
        sid: &str,
    ) -> Result<(Option<Session>, Option<super::user_record::User>), StoreError> {
        let (session, user) = tokio::join!(self.get_session(user_id, sid), self.get_user(user_id));
        Ok((session?, user?))
    }

    /// End a session. Returns false when it was unknown or already ended (nothing written).
    pub async fn end_session(
        &self,
        user_id: &str,
        sid: &str,
        reason: SessionEnd,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut u = Update::default();
        u.set("ended_at", n(now));
        u.set("end_reason", s(reason.as_str()));
        let ended = u.name("ended_at");
        let condition = format!("attribute_exists(pk) AND attribute_not_exists({ended})");
        self.update_if(self.session_key(user_id, sid), u, condition)
            .await
    }

    /// The app says the session is still in use (`POST /auth/sync` again): `last_seen_at`, only
    /// while it is live here. Returns false when it is unknown or ended (nothing written).
    pub async fn touch_session(
        &self,
        user_id: &str,
        sid: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut u = Update::default();
        u.set("last_seen_at", n(now));
        let ended = u.name("ended_at");
        let condition = format!("attribute_exists(pk) AND attribute_not_exists({ended})");
        self.update_if(self.session_key(user_id, sid), u, condition)
            .await
    }

    /// Every session record of a user, newest first.
    pub async fn list_sessions(&self, user_id: &str) -> Result<Vec<Session>, StoreError> {
        let mut sessions = self
            .user_items(user_id, "SESSION#")
            .await?
            .into_iter()
            .map(Session::from_item)
            .collect::<Result<Vec<_>, _>>()?;
        sessions.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        Ok(sessions)
    }

    /// End every open session of a user; returns how many were ended.
    pub async fn end_all_sessions(
        &self,
        user_id: &str,
        reason: SessionEnd,
        now: i64,
    ) -> Result<usize, StoreError> {
        let mut ended = 0;
        for session in self.list_sessions(user_id).await? {
            if session.ended_at.is_none()
                && self.end_session(user_id, &session.sid, reason, now).await?
            {
                ended += 1;
            }
        }
        Ok(ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hash_is_sha256_hex() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
