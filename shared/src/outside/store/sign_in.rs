//! The standard flow's short-lived items, each taken once: a sign-in in progress (by the hash
//! of its `state`: where the browser goes back to, the hash of the cookie that binds it to its
//! browser, until when) and a signed-in result waiting
//! for its app (by the hash of its one-time handle: the answer sealed with the handle itself,
//! so the table never holds a token it could read). Neither holds a secret: the PKCE verifier
//! and the nonce are derived from the state (`KeycloakClient::sign_in_binding`).

use crate::base::clock::EpochSecs;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use crate::base::deadline::Bounded;

use super::table::{n, s, sdk_error, Store, StoreError};

fn state_pk(state_hash: &str) -> String {
    format!("SIGN_IN#{state_hash}")
}

fn handle_pk(handle_hash: &str) -> String {
    format!("SIGNED_IN#{handle_hash}")
}

impl Store {
    /// A sign-in begun in the browser holding the cookie that hashes to `binding_hash`: it goes
    /// back to `target`, until `expires_at` (epoch s).
    pub async fn put_sign_in(
        &self,
        state_hash: &str,
        target: &str,
        binding_hash: &str,
        expires_at: EpochSecs,
    ) -> Result<(), StoreError> {
        let value = AttributeValue::L(vec![s(target), s(binding_hash)]);
        self.put_once(state_pk(state_hash), "sign_in", value, expires_at)
            .await
    }

    /// Take a sign-in (once): its target and its browser's binding hash, or `None` when it is
    /// unknown, taken or expired.
    pub async fn take_sign_in(
        &self,
        state_hash: &str,
        now: EpochSecs,
    ) -> Result<Option<(String, String)>, StoreError> {
        let item = self.take(state_pk(state_hash), now).await?;
        let pair = item.and_then(|v| v.as_l().ok().cloned()).and_then(|l| {
            let text = |i: usize| l.get(i).and_then(|v| v.as_s().ok()).cloned();
            Some((text(0)?, text(1)?))
        });
        Ok(pair)
    }

    /// A signed-in answer, sealed, waiting for its handle until `expires_at` (epoch s).
    pub async fn put_signed_in(
        &self,
        handle_hash: &str,
        sealed: Vec<u8>,
        expires_at: EpochSecs,
    ) -> Result<(), StoreError> {
        let value = AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(sealed));
        self.put_once(handle_pk(handle_hash), "sealed", value, expires_at)
            .await
    }

    /// Take a signed-in answer (once), still sealed.
    pub async fn take_signed_in(
        &self,
        handle_hash: &str,
        now: EpochSecs,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let item = self.take(handle_pk(handle_hash), now).await?;
        Ok(item.and_then(|v| v.as_b().ok().map(|b| b.as_ref().to_vec())))
    }

    async fn put_once(
        &self,
        pk: String,
        field: &str,
        value: AttributeValue,
        expires_at: EpochSecs,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(pk))
            .item("sk", s("ONCE"))
            .item(field, value)
            .item("expires_at", n(expires_at))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .within_deadline()
            .await?
            .map_err(sdk_error)?;
        Ok(())
    }

    /// Delete the item and give back its one value field, unless it is gone or expired (DynamoDB
    /// removes expired items only eventually).
    async fn take(&self, pk: String, now: EpochSecs) -> Result<Option<AttributeValue>, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s("ONCE"))
            .return_values(ReturnValue::AllOld)
            .send()
            .within_deadline()
            .await?
            .map_err(sdk_error)?;
        let Some(mut item) = out.attributes else {
            return Ok(None);
        };
        let live = item
            .get("expires_at")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|at| EpochSecs(at) > now);
        if !live {
            return Ok(None);
        }
        Ok(item.remove("sign_in").or_else(|| item.remove("sealed")))
    }
}
