//! Attempt counters for abuse limits: one item per subject and fixed time window
//! (`THROTTLE#<kind>#<key>` / `<window start>`), counted with an atomic `ADD` and removed by the
//! table's TTL when the window is long over.

use crate::base::clock::EpochSecs;
use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::table::{n, s, sdk_error, written, Store, StoreError};
use crate::base::deadline::Bounded;

/// One subject's counter in one window.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptWindow {
    /// `THROTTLE#<kind>#<key>`.
    pub subject: String,
    /// Epoch seconds at which the window started.
    pub start: EpochSecs,
    /// Epoch seconds at which the window ends.
    pub end: EpochSecs,
}

impl AttemptWindow {
    fn key(&self) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".into(), s(self.subject.clone())),
            ("sk".into(), s(self.start.to_string())),
        ])
    }
}

impl Store {
    /// Count one attempt; returns the count including it.
    pub async fn count_attempt(&self, window: &AttemptWindow) -> Result<u64, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(window.key()))
            .update_expression("ADD attempts :one SET expires_at = :expires")
            .expression_attribute_values(":one", n(1))
            // Kept one more window after it ends, then the TTL removes it.
            .expression_attribute_values(
                ":expires",
                n(window.end.after(window.end.secs_since(window.start))),
            )
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .within_deadline()
            .await?
            .map_err(sdk_error)?;
        Ok(out
            .attributes
            .and_then(|a| a.get("attempts").and_then(|v| v.as_n().ok()).cloned())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Take back an attempt that did not count (it succeeded, or its outcome was not the caller's
    /// doing). Nothing happens if the window is gone.
    pub async fn uncount_attempt(&self, window: &AttemptWindow) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(window.key()))
            .update_expression("ADD attempts :minus")
            .condition_expression("attempts > :zero")
            .expression_attribute_values(":minus", n(-1))
            .expression_attribute_values(":zero", n(0))
            .send()
            .within_deadline()
            .await?;
        written(result).map(|_| ())
    }

    /// Forget a subject's attempts in a window (a successful login clears its username's count).
    pub async fn clear_attempts(&self, window: &AttemptWindow) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(window.key()))
            .send()
            .within_deadline()
            .await?
            .map_err(sdk_error)?;
        Ok(())
    }
}
