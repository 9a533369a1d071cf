//! A login written to the user record and its session in one transaction.

use crate::base::deadline::Bounded;

use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update as TxUpdate};

use super::sessions::Session;
use super::table::{n, s, sdk_error, Store, StoreError, Update};
use super::user_record::{
    attribute_key, bump_version, write_identity, Attributes, KeycloakFields, MISSING_IN_KEYCLOAK,
};

/// A login: the identity as the fresh access token states it, and the session it opened.
#[derive(Clone, Debug)]
pub struct LoginRecord {
    pub user_id: String,
    pub fields: KeycloakFields,
    pub attributes: Attributes,
    pub at: i64,
}

impl Store {
    /// A login in one round trip: the user's identity as the token states it (a login is always
    /// the newest observation), `last_login_at` and `login_count`, and the new session.
    pub async fn record_login(
        &self,
        login: &LoginRecord,
        session: &Session,
    ) -> Result<(), StoreError> {
        self.write_login(login, session, false).await
    }

    /// `record_login` for a session that must not be on record yet (an app's sync of a Keycloak
    /// session): `AlreadyExists` when another call recorded it first, and nothing is written.
    pub async fn record_login_of_new_session(
        &self,
        login: &LoginRecord,
        session: &Session,
    ) -> Result<(), StoreError> {
        self.write_login(login, session, true).await
    }

    pub(super) async fn write_login(
        &self,
        login: &LoginRecord,
        session: &Session,
        new_session_only: bool,
    ) -> Result<(), StoreError> {
        let fields = login.fields.clone().normalized();
        let hash = fields.content_hash();
        let mut u = Update::default();
        write_identity(&mut u, &login.user_id, &fields, &hash, login.at, login.at);
        // Only what the token states: a claim missing (say, a mapper not configured) never
        // erases local business data.
        for (name, value) in &login.attributes {
            u.set(&attribute_key(name), s(value.clone()));
        }
        u.set("last_login_at", n(login.at));
        let (created, now) = (u.name("created_at"), u.value(n(login.at)));
        u.set_expr("created_at", format!("if_not_exists({created}, {now})"));
        let (count, zero, one) = (u.name("login_count"), u.value(n(0)), u.value(n(1)));
        u.set_expr(
            "login_count",
            format!("if_not_exists({count}, {zero}) + {one}"),
        );
        bump_version(&mut u);
        // A user the sync marked missing whom Keycloak has just signed in is back (the grant is
        // Keycloak's confirmation); an admin's delete stays, and refuses the login.
        u.set_opt("deleted_at", None);
        u.set_opt("deleted_reason", None);
        u.set_opt("deleted_by", None);
        let (status, deleted) = (u.name("status"), u.value(s("deleted")));
        let (reason, missing) = (u.name("deleted_reason"), u.value(s(MISSING_IN_KEYCLOAK)));
        let user_update = TxUpdate::builder()
            .table_name(&self.table)
            .set_key(Some(self.user_key(&login.user_id)))
            .update_expression(u.expression())
            .condition_expression(format!(
                "attribute_not_exists(pk) OR {status} <> {deleted} OR {reason} = {missing}"
            ))
            .set_expression_attribute_names(Some(u.names))
            .set_expression_attribute_values(Some(u.values))
            .build()
            .map_err(|e| StoreError::Other(e.to_string()))?;
        let session_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(session.to_item()?))
            .set_condition_expression(
                new_session_only.then(|| "attribute_not_exists(pk)".to_owned()),
            )
            .build()
            .map_err(|e| StoreError::Other(e.to_string()))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(user_update).build())
            .transact_items(TransactWriteItem::builder().put(session_put).build())
            .send()
            .within_deadline()
            .await?;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                // Which write's condition refused it: the user's (deleted here) or the session's.
                let refused = |index: usize| {
                    e.as_service_error().is_some_and(|se| {
                        matches!(se, aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(t)
                            if t.cancellation_reasons().get(index).and_then(|r| r.code()) == Some("ConditionalCheckFailed"))
                    })
                };
                if refused(0) {
                    Err(StoreError::UserDeleted)
                } else if refused(1) {
                    Err(StoreError::AlreadyExists)
                } else {
                    Err(sdk_error(e))
                }
            }
        }
    }
}
