//! Idempotency records for registration: the first request with a key claims it; a retry with
//! the same key and body gets the stored response; the same key with another body is refused.

use crate::deadline::Bounded;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::sessions::token_hash;
use super::{n, s, sdk_error, written, Store, StoreError};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// First time: go ahead, then `complete_idempotency` (or `release_idempotency` on failure).
    New,
    /// Another request with this key is still running.
    InProgress,
    /// Done before: answer this again.
    Completed(StoredResponse),
    /// The key was used with a different request body.
    Mismatch,
}

fn key(idempotency_key: &str) -> HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
    HashMap::from([
        (
            "pk".into(),
            s(format!("IDEMPOTENCY#{}", token_hash(idempotency_key))),
        ),
        ("sk".into(), s("REGISTER")),
    ])
}

impl Store {
    /// Claim `idempotency_key` for a request whose body hashes to `request_hash`: the record is
    /// kept until `expires_at` (epoch s), the claim itself holds until `claim_until` (epoch ms, the
    /// claiming invocation's end). A claim whose invocation died is taken over by a retry of the
    /// same request.
    pub async fn claim_idempotency(
        &self,
        idempotency_key: &str,
        request_hash: &str,
        expires_at: i64,
        claim_until: i64,
        now: i64,
    ) -> Result<Claim, StoreError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("state", s("in_progress"))
            .item("request_hash", s(request_hash))
            .item("expires_at", n(expires_at))
            .item("claim_until", n(claim_until))
            .condition_expression(
                "attribute_not_exists(pk) OR (#state = :in_progress AND claim_until < :now \
                 AND request_hash = :hash)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":in_progress", s("in_progress"))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":hash", s(request_hash));
        for (k, v) in key(idempotency_key) {
            put = put.item(k, v);
        }
        if written(put.send().within_deadline().await?)? {
            return Ok(Claim::New);
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
        let text = |k: &str| {
            item.get(k)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default()
        };
        if text("request_hash") != request_hash {
            return Ok(Claim::Mismatch);
        }
        if text("state") != "completed" {
            return Ok(Claim::InProgress);
        }
        let status = item
            .get("response_status")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(200);
        Ok(Claim::Completed(StoredResponse {
            status,
            body: text("response_body"),
        }))
    }

    pub async fn complete_idempotency(
        &self,
        idempotency_key: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(idempotency_key)))
            .update_expression(
                "SET #state = :done, response_status = :status, response_body = :body",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":done", s("completed"))
            .expression_attribute_values(":status", n(response.status))
            .expression_attribute_values(":body", s(response.body.clone()))
            .send()
            .within_deadline()
            .await?
            .map_err(sdk_error)?;
        Ok(())
    }

    /// Forget a claim whose request failed, so that a retry can run again.
    pub async fn release_idempotency(&self, idempotency_key: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(idempotency_key)))
            .send()
            .within_deadline()
            .await?
            .map_err(sdk_error)?;
        Ok(())
    }
}
