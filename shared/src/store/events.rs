//! Webhook events taken by the hook: one item per event (keyed by the digest of its id), kept
//! until no delivery of it could still be fresh (TTL), so a replay of a captured delivery inside
//! that window is acknowledged and dropped.

use crate::deadline::Bounded;

use super::{n, s, sdk_error, written, Store, StoreError};

fn event_pk(digest: &str) -> String {
    format!("HOOK_EVENT#{digest}")
}

impl Store {
    /// Take an event: `true` the first time, `false` when it was taken before.
    pub async fn take_event(&self, digest: &str, keep_until_s: i64) -> Result<bool, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(event_pk(digest)))
            .item("sk", s("EVENT"))
            .item("expires_at", n(keep_until_s))
            .condition_expression("attribute_not_exists(pk)");
        written(put.send().within_deadline().await?)
    }

    /// Give an event back (it could not be queued): its retry is taken as new.
    pub async fn forget_event(&self, digest: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(event_pk(digest)))
            .key("sk", s("EVENT"))
            .send()
            .within_deadline()
            .await?
            .map_err(sdk_error)?;
        Ok(())
    }
}
