//! Registrations in flight. A registration writes one before it creates the Keycloak user and
//! removes it once the local record is written or the attempt is given up, so the repair of an
//! earlier failed registration of the same username never deletes the Keycloak user that this
//! one has just created and not yet recorded (`features::repair`). One item per username, keyed
//! by its hash (it holds nothing of the person); an attempt that dies leaves it to lapse at its
//! `until`, and the table's TTL removes it later. A known limit: a second attempt of the name
//! writes over the first's item, so when two run at once and the second ends first (Keycloak
//! gives the name to one of them), the first is no longer on record; a repair of a third,
//! earlier failed registration of the same name that runs in that moment could still take the
//! first one's user.

use crate::base::clock::EpochSecs;
use crate::base::deadline::Bounded;

use super::sessions::token_hash;
use super::table::{n, s, sdk_error, written, Store, StoreError};

/// How long the TTL keeps a lapsed item (its `until` is what counts).
const KEPT_S: i64 = 3600;

fn registering_pk(username: &str) -> String {
    format!("REGISTERING#{}", token_hash(&username.to_lowercase()))
}

impl Store {
    /// Registration `attempt` of `username` is in flight until `until_ms` at the latest.
    pub async fn begin_registering(
        &self,
        username: &str,
        attempt: &str,
        until_ms: i64,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(registering_pk(username)))
            .item("sk", s("ATTEMPT"))
            .item("attempt", s(attempt))
            .item("until", n(until_ms))
            .item("expires_at", n(EpochSecs::of_ms(until_ms).after(KEPT_S)))
            .send()
            .within_deadline()
            .await?
            .map_err(sdk_error)?;
        Ok(())
    }

    /// The attempt is over (its record is written, or it gave up). A later attempt of the same
    /// name that wrote over it keeps its own.
    pub async fn end_registering(&self, username: &str, attempt: &str) -> Result<(), StoreError> {
        let delete = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(registering_pk(username)))
            .key("sk", s("ATTEMPT"))
            .condition_expression("attempt = :attempt")
            .expression_attribute_values(":attempt", s(attempt));
        written(delete.send().within_deadline().await?).map(|_| ())
    }

    /// Whether a registration of `username` is in flight at `now_ms`, other than `except`.
    pub async fn is_registering(
        &self,
        username: &str,
        now_ms: i64,
        except: Option<&str>,
    ) -> Result<bool, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(registering_pk(username)))
            .key("sk", s("ATTEMPT"))
            .consistent_read(true)
            .send()
            .within_deadline()
            .await?
            .map_err(sdk_error)?;
        let Some(item) = out.item else {
            return Ok(false);
        };
        let until = item
            .get("until")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok());
        let attempt = item.get("attempt").and_then(|v| v.as_s().ok());
        // A deadline that cannot be read counts as in flight: the repair waits (the record's
        // TTL still removes it) rather than delete a user a registration may be recording.
        Ok(until.is_none_or(|until| until > now_ms) && attempt.map(String::as_str) != except)
    }
}
