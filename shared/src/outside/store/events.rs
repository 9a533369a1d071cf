//! Keycloak's events taken once: webhook events taken by the hook, and back-channel logout
//! tokens: one item per event (keyed by the digest of its id), kept until no delivery of it
//! could still be fresh (TTL), so a replay of a captured delivery inside that window is known.

use crate::base::clock::EpochSecs;
use crate::base::deadline::Bounded;

use super::table::{n, s, sdk_error, written, Store, StoreError};

fn event_pk(digest: &str) -> String {
    format!("HOOK_EVENT#{digest}")
}

fn logout_token_pk(digest: &str) -> String {
    format!("LOGOUT_TOKEN#{digest}")
}

impl Store {
    /// Take an event: `true` the first time, `false` when it was taken before.
    pub async fn take_event(
        &self,
        digest: &str,
        keep_until: EpochSecs,
    ) -> Result<bool, StoreError> {
        self.take_once(event_pk(digest), keep_until).await
    }

    /// Take a back-channel logout token (by the digest of its issuer and `jti`): `true` the
    /// first time, `false` for a replay.
    pub async fn take_logout_token(
        &self,
        digest: &str,
        keep_until: EpochSecs,
    ) -> Result<bool, StoreError> {
        self.take_once(logout_token_pk(digest), keep_until).await
    }

    async fn take_once(&self, pk: String, keep_until: EpochSecs) -> Result<bool, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(pk))
            .item("sk", s("EVENT"))
            .item("expires_at", n(keep_until))
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
