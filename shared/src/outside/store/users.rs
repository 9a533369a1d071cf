//! Reads and writes of user records outside admin edits: a record read, created, brought up to a
//! newer observation of Keycloak (`apply_keycloak_fields`), marked missing, and a first sync's
//! records created if absent.

use crate::base::deadline::{self, Bounded};

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};

use super::edits::{locked_at, LOCK, LOCK_UNTIL};
use super::table::{n, refused_item, s, sdk_error, written, Item, Store, StoreError, Update};
use super::user_record::Attributes;
use super::user_record::{
    attribute_key, bump_version, write_identity, ApplyOutcome, KeycloakFields, User,
    MISSING_IN_KEYCLOAK,
};

/// What a write of Keycloak's fields did, from the record it replaced (`UPDATED_OLD`).
fn written_over(old: Option<&Item>) -> ApplyOutcome {
    let status = old
        .and_then(|o| o.get("status"))
        .and_then(|v| v.as_s().ok());
    match old {
        Some(_) if status.map(String::as_str) == Some("deleted") => ApplyOutcome::Reactivated,
        Some(old) if old.contains_key("version") => ApplyOutcome::Updated,
        _ => ApplyOutcome::Created,
    }
}

/// Why the record refused a write of Keycloak's fields: an admin's edit holds it, it holds
/// this content already, or a newer observation (or an admin's delete).
fn refused_by(old: &Item, hash: &str, now: i64) -> Result<ApplyOutcome, StoreError> {
    if locked_at(old, now) {
        return Err(StoreError::Locked);
    }
    let same = old
        .get("kc_hash")
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        == Some(hash);
    Ok(if same {
        ApplyOutcome::Unchanged
    } else {
        ApplyOutcome::Skipped
    })
}

/// Conditional puts a first sync keeps in flight (`create_users_if_absent`).
pub const CREATE_CONCURRENCY: usize = 16;

impl Store {
    pub async fn get_user(&self, id: &str) -> Result<Option<User>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(self.user_key(id)))
            .consistent_read(true)
            .send()
            .within_deadline()
            .await?
            .map_err(sdk_error)?;
        out.item.map(User::from_item).transpose()
    }

    /// Write a new user unless one with this id exists (`AlreadyExists`).
    pub async fn create_user(&self, user: &User) -> Result<(), StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(user.to_item()?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .within_deadline()
            .await?;
        if written(result)? {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists)
        }
    }

    /// Write Keycloak's view of a user observed at `observed_at` (epoch ms): creates the record
    /// (with `attributes` as its first business attributes) or updates only the Keycloak-owned
    /// fields, and only if this observation is newer than the stored one and the content differs.
    /// A soft-deleted user is left alone.
    pub async fn apply_keycloak_fields(
        &self,
        id: &str,
        fields: &KeycloakFields,
        attributes: &Attributes,
        observed_at: i64,
        now: i64,
    ) -> Result<ApplyOutcome, StoreError> {
        let fields = fields.clone().normalized();
        let hash = fields.content_hash();
        let mut u = Update::default();
        write_identity(&mut u, id, &fields, &hash, observed_at, now);
        for (name, value) in attributes {
            let key = attribute_key(name);
            let (nm, val) = (u.name(&key), u.value(s(value.clone())));
            u.set_expr(&key, format!("if_not_exists({nm}, {val})"));
        }
        let (created, zero, one) = (u.name("created_at"), u.value(n(now)), u.value(n(0)));
        u.set_expr("created_at", format!("if_not_exists({created}, {zero})"));
        let count = u.name("login_count");
        u.set_expr("login_count", format!("if_not_exists({count}, {one})"));
        bump_version(&mut u);
        let (obs, hash_name, status, deleted) = (
            u.name("kc_observed_at"),
            u.name("kc_hash"),
            u.name("status"),
            u.value(s("deleted")),
        );
        let (obs_v, hash_v) = (u.value(n(observed_at)), u.value(s(hash.clone())));
        // Reactivation: a record the sync marked missing comes back to life, even with the same
        // content; an admin's delete is never undone here.
        u.set_opt("deleted_at", None);
        u.set_opt("deleted_reason", None);
        let (reason, missing) = (u.name("deleted_reason"), u.value(s(MISSING_IN_KEYCLOAK)));
        // Never under an admin's write lock: the edit in flight writes Keycloak, then its own
        // observation (`finish_edit`); a read taken before it must not land in between.
        let (owner, until, now_v) = (u.name(LOCK), u.name(LOCK_UNTIL), u.value(n(now)));
        let unlocked = format!("(attribute_not_exists({owner}) OR {until} < {now_v})");
        let condition = format!(
            "attribute_not_exists(pk) \
             OR ({obs} < {obs_v} AND {hash_name} <> {hash_v} AND {status} <> {deleted} AND {unlocked}) \
             OR ({obs} < {obs_v} AND {reason} = {missing} AND {unlocked})"
        );
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.user_key(id)))
            .update_expression(u.expression())
            .condition_expression(condition)
            .set_expression_attribute_names(Some(u.names))
            .set_expression_attribute_values(Some(u.values))
            .return_values(ReturnValue::UpdatedOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .within_deadline()
            .await?;
        match result {
            Ok(out) => Ok(written_over(out.attributes.as_ref())),
            Err(e) => {
                let old = refused_item(&e);
                match old {
                    Some(old) => refused_by(&old, &hash, now),
                    None => Err(sdk_error(e)),
                }
            }
        }
    }

    /// Record that the user's Keycloak sessions wait to be ended since `since` (epoch ms). A
    /// missing record is left alone.
    pub async fn mark_logout_pending(&self, id: &str, since: i64) -> Result<(), StoreError> {
        let mut u = Update::default();
        u.set("pending_keycloak_logout", n(since));
        let pk = u.name("pk");
        self.update_if(self.user_key(id), u, format!("attribute_exists({pk})"))
            .await?;
        Ok(())
    }

    /// The user's Keycloak sessions begun by `up_to` (epoch ms) have been ended: a logout
    /// pending since then or earlier is done (a later one stays pending).
    pub async fn clear_logout_pending(&self, id: &str, up_to: i64) -> Result<(), StoreError> {
        let mut u = Update::default();
        u.set_opt("pending_keycloak_logout", None);
        let (pending, up_to) = (u.name("pending_keycloak_logout"), u.value(n(up_to)));
        self.update_if(self.user_key(id), u, format!("{pending} <= {up_to}"))
            .await?;
        Ok(())
    }

    /// The sync found this user gone from Keycloak: mark the record deleted (it comes back if
    /// Keycloak has the user again). Returns false if it was deleted already.
    pub async fn mark_missing(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let mut u = Update::default();
        u.set("status", s("deleted"));
        u.set("enabled", AttributeValue::Bool(false));
        u.set("deleted_at", n(now));
        u.set("deleted_reason", s(MISSING_IN_KEYCLOAK));
        u.set("updated_at", n(now));
        u.set("kc_observed_at", n(now));
        let (version, one) = (u.name("version"), u.value(n(1)));
        u.set_expr("version", format!("{version} + {one}"));
        let (status, deleted) = (u.name("status"), u.value(s("deleted")));
        let condition = format!("attribute_exists(pk) AND {status} <> {deleted}");
        self.update_if(self.user_key(id), u, condition).await
    }

    /// A registration found its record written already (a sync or a webhook imported the new
    /// Keycloak user first): mark it registered, as its own write would have, and answer the
    /// record as it is now (`None` if it is gone meanwhile), in one round trip.
    pub async fn mark_registered(&self, id: &str, at: i64) -> Result<Option<User>, StoreError> {
        let mut u = Update::default();
        let (name, value) = (u.name("registered_at"), u.value(n(at)));
        u.set_expr("registered_at", format!("if_not_exists({name}, {value})"));
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.user_key(id)))
            .update_expression(u.expression())
            .condition_expression("attribute_exists(pk)")
            .set_expression_attribute_names(Some(u.names))
            .set_expression_attribute_values(Some(u.values))
            .return_values(ReturnValue::AllNew)
            .send()
            .within_deadline()
            .await?;
        match result {
            Ok(out) => out.attributes.map(User::from_item).transpose(),
            Err(e) if refused_item(&e).is_some() => Ok(None),
            Err(e) => Err(sdk_error(e)),
        }
    }

    /// Create these users, `CREATE_CONCURRENCY` conditional puts in flight, each only if no
    /// record exists yet: a record that a login or a registration wrote since the digest was read
    /// is never overwritten (a blind batch put could), and each put costs what a plain write costs
    /// (a transaction of conditional puts costs twice as much on the table and was slower; `make
    /// bench` measures both). Answers the users the condition refused, to be written one by one
    /// with `apply_keycloak_fields`. On any other error no new put starts, the ones in flight
    /// finish, and the first error is answered.
    pub async fn create_users_if_absent(&self, users: Vec<User>) -> Result<Vec<User>, StoreError> {
        let mut pending = users.into_iter();
        let mut set = tokio::task::JoinSet::new();
        let (mut refused, mut failure) = (Vec::new(), None);
        loop {
            while set.len() < CREATE_CONCURRENCY && failure.is_none() {
                let Some(user) = pending.next() else { break };
                let store = self.clone();
                set.spawn(deadline::carried(async move {
                    let created = store.create_user(&user).await;
                    (user, created)
                }));
            }
            let Some(done) = set.join_next().await else {
                break;
            };
            match done {
                Ok((_, Ok(()))) => {}
                Ok((user, Err(StoreError::AlreadyExists))) => refused.push(user),
                Ok((_, Err(e))) => {
                    failure.get_or_insert(e);
                }
                Err(e) => {
                    failure.get_or_insert(StoreError::Other(format!("a create task failed: {e}")));
                }
            }
        }
        failure.map_or(Ok(refused), Err)
    }
}
