//! Idempotency records for registration: the first request with a key claims it; a retry with
//! the same key and body gets the same account back; the same key with another body is refused.
//! A completed record holds the id of the account it created, never its data: the answer is
//! rebuilt from the account's record. Under the account's own partition a pointer
//! (`IDEMPOTENCY#<key hash>`) names it, so erasing the account finds and erases it too.

use crate::base::clock::EpochSecs;
use crate::base::deadline::Bounded;
use std::collections::HashMap;

use super::sessions::token_hash;
use super::table::{n, s, sdk_error, user_pk, written, Item, Store, StoreError};

#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// First time: go ahead, then `complete_idempotency` (or `release_idempotency` on failure).
    New,
    /// An earlier attempt of this request, first started at `since` (epoch ms), failed or died:
    /// go ahead as with `New`, knowing that it may have created the Keycloak user already.
    Resumed { since: i64 },
    /// Another request with this key is still running.
    InProgress,
    /// Done before: this account was created.
    Completed { user_id: String },
    /// Done before, and the account it created has since been erased (a hard delete).
    Erased,
    /// The key was used with a different request body.
    Mismatch,
}

fn record_pk(idempotency_key: &str) -> String {
    format!("IDEMPOTENCY#{}", token_hash(idempotency_key))
}

fn key(idempotency_key: &str) -> HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
    HashMap::from([
        ("pk".into(), s(record_pk(idempotency_key))),
        ("sk".into(), s("REGISTER")),
    ])
}

/// The pointer under the account's partition: its sort key names the record's partition key.
pub(crate) const POINTER_PREFIX: &str = "IDEMPOTENCY#";

impl Store {
    /// Claim `idempotency_key` for a request whose body hashes to `request_hash`: the record is
    /// kept until `expires_at` (epoch s), the claim itself holds until `claim_until` (epoch ms, the
    /// claiming invocation's end). A claim whose invocation died is taken over by a retry of the
    /// same request.
    pub async fn claim_idempotency(
        &self,
        idempotency_key: &str,
        request_hash: &str,
        expires_at: EpochSecs,
        claim_until: i64,
        now: i64,
    ) -> Result<Claim, StoreError> {
        // One update claims a new key, a released one, or one whose invocation died; the first
        // attempt's start survives every later claim.
        let claim = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(idempotency_key)))
            .update_expression(
                "SET #state = :in_progress, request_hash = :hash, expires_at = :expires, \
                 claim_until = :until, first_attempt_at = if_not_exists(first_attempt_at, :now)",
            )
            .condition_expression(
                "attribute_not_exists(pk) OR (request_hash = :hash AND (#state = :released \
                 OR (#state = :in_progress AND claim_until < :now)))",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":in_progress", s("in_progress"))
            .expression_attribute_values(":released", s("released"))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":hash", s(request_hash))
            .expression_attribute_values(":expires", n(expires_at))
            .expression_attribute_values(":until", n(claim_until))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .within_deadline()
            .await?;
        match claim {
            Ok(out) => {
                let since = out
                    .attributes
                    .as_ref()
                    .and_then(|old| old.get("first_attempt_at"))
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse().ok());
                return Ok(match since {
                    Some(since) => Claim::Resumed { since },
                    None => Claim::New,
                });
            }
            // Not claimable (or not a conditional failure: then the error): read what holds it.
            Err(e) => {
                written(Err::<(), _>(e))?;
            }
        }
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(idempotency_key)))
            .consistent_read(true)
            .send()
            .within_deadline()
            .await?
            .map_err(sdk_error)?;
        let Some(item) = out.item else {
            // Released between our put and get: try once more.
            return Box::pin(self.claim_idempotency(
                idempotency_key,
                request_hash,
                expires_at,
                claim_until,
                now,
            ))
            .await;
        };
        Ok(held(&item, request_hash))
    }

    /// Record that the claim's request created `user_id`. The pointer from the account's
    /// partition is written first: a record that names an account is always found by erasing it.
    pub async fn complete_idempotency(
        &self,
        idempotency_key: &str,
        user_id: &str,
        expires_at: EpochSecs,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(user_pk(user_id)))
            .item("sk", s(record_pk(idempotency_key)))
            .item("expires_at", n(expires_at))
            .send()
            .within_deadline()
            .await?
            .map_err(sdk_error)?;
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(idempotency_key)))
            .update_expression("SET #state = :done, user_id = :user")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":done", s("completed"))
            .expression_attribute_values(":user", s(user_id))
            .send()
            .within_deadline()
            .await?
            .map_err(sdk_error)?;
        Ok(())
    }

    /// Strip the record a pointer names down to "its account was erased": no request hash (a
    /// hash of the person's data), no account id; a replay of its key is then refused.
    pub(crate) async fn erase_idempotency(&self, record_pk: &str) -> Result<(), StoreError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(record_pk))
            .key("sk", s("REGISTER"))
            .update_expression("SET #state = :erased REMOVE request_hash, user_id, claim_until")
            // An expired record is gone: nothing to strip, nothing to create.
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":erased", s("erased"));
        written(update.send().within_deadline().await?)?;
        Ok(())
    }

    /// Let a claim whose request failed go, so that a retry runs it again. After an attempt
    /// whose outcome is unknown (`outcome_unknown`: Keycloak may have created the user) the
    /// record stays, released, with when the first attempt started (`Claim::Resumed`); after a
    /// definite refusal it goes. Runs in the compensation margin: the claim must be gone before
    /// the answer that tells the client to retry.
    pub async fn release_idempotency(
        &self,
        idempotency_key: &str,
        outcome_unknown: bool,
    ) -> Result<(), StoreError> {
        let release = async {
            if outcome_unknown {
                let update = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(key(idempotency_key)))
                    .update_expression("SET #state = :released REMOVE claim_until")
                    .condition_expression("#state = :in_progress")
                    .expression_attribute_names("#state", "state")
                    .expression_attribute_values(":released", s("released"))
                    .expression_attribute_values(":in_progress", s("in_progress"));
                written(update.send().within_deadline().await?)
            } else {
                let delete = self
                    .client
                    .delete_item()
                    .table_name(&self.table)
                    .set_key(Some(key(idempotency_key)))
                    .condition_expression("#state = :in_progress")
                    .expression_attribute_names("#state", "state")
                    .expression_attribute_values(":in_progress", s("in_progress"));
                written(delete.send().within_deadline().await?)
            }
        };
        crate::base::deadline::compensate(release).await?;
        Ok(())
    }
}

/// What the record that holds a key says to a request that could not claim it.
fn held(item: &Item, request_hash: &str) -> Claim {
    let text = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    if text("state") == "erased" {
        Claim::Erased
    } else if text("request_hash") != request_hash {
        Claim::Mismatch
    } else if text("state") != "completed" {
        Claim::InProgress
    } else {
        Claim::Completed {
            user_id: text("user_id"),
        }
    }
}
