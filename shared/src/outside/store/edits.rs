//! Admin edits of a user record: under a write lock (`begin_edit`), with versions that only grow,
//! finished, held for repair, settled or undone once Keycloak has answered.

use crate::base::deadline::Bounded;

use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;

use super::table::{n, refused_item, s, sdk_error, Item, Store, StoreError, Update};
use super::user_record::{attribute_key, write_identity, Attributes, KeycloakFields, User};

/// An admin write in flight: who holds it, until when (epoch ms). A crashed writer's lock
/// expires with its invocation, and the next writer takes over.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteLock {
    pub owner: String,
    pub until: i64,
}

/// Whether an item's admin write lock is held at `now`.
pub(super) fn locked_at(item: &Item, now: i64) -> bool {
    item.contains_key(LOCK)
        && item
            .get(LOCK_UNTIL)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|until| until >= now)
}

pub(super) const LOCK: &str = "write_lock";

pub(super) const LOCK_UNTIL: &str = "write_lock_until";

/// SET every attribute whose value differs from `from` to `to`, REMOVE those `to` lacks.
/// Keys and the version are left to the caller.
pub(super) fn diff_update(from: &Item, to: &Item) -> Update {
    let mut u = Update::default();
    let sorted = |item: &Item| {
        item.keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
    };
    for k in sorted(to) {
        if matches!(k.as_str(), "pk" | "sk" | "version") {
            continue;
        }
        if from.get(&k) != to.get(&k) {
            u.set(&k, to[&k].clone());
        }
    }
    for k in sorted(from) {
        if !to.contains_key(&k)
            && !matches!(k.as_str(), "pk" | "sk" | "version" | LOCK | LOCK_UNTIL)
        {
            u.set_opt(&k, None);
        }
    }
    u
}

impl Store {
    /// Start an admin's change of a user: write the fields in which `new` differs from `old`
    /// (nothing else, so a login's counters written meanwhile survive), set the version to
    /// `new.version` and take the write lock until `lock.until`. Refused with `VersionConflict`
    /// if the record moved past `old.version`, `Locked` while another admin write is in flight,
    /// `NotFound` if it is gone.
    pub async fn begin_edit(
        &self,
        old: &User,
        new: &User,
        lock: &WriteLock,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut u = diff_update(&old.to_item()?, &new.to_item()?);
        u.set("version", n(new.version));
        u.set(LOCK, s(lock.owner.clone()));
        u.set(LOCK_UNTIL, n(lock.until));
        let (version, expected) = (u.name("version"), u.value(n(old.version)));
        let (owner, until, now_v) = (u.name(LOCK), u.name(LOCK_UNTIL), u.value(n(now)));
        let condition = format!(
            "attribute_exists(pk) AND {version} = {expected} \
             AND (attribute_not_exists({owner}) OR {until} < {now_v})"
        );
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.user_key(&old.id)))
            .update_expression(u.expression())
            .condition_expression(condition)
            .set_expression_attribute_names(Some(u.names))
            .set_expression_attribute_values(Some(u.values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .within_deadline()
            .await?;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                let current = refused_item(&e);
                match current {
                    None => Err(sdk_error(e)),
                    Some(item) if item.is_empty() => Err(StoreError::NotFound),
                    Some(item) if locked_at(&item, now) => Err(StoreError::Locked),
                    Some(_) => Err(StoreError::VersionConflict),
                }
            }
        }
    }

    /// The change Keycloak accepted: release the lock, and record now (after Keycloak's write
    /// returned) as the observation of what the record holds, so that a read of Keycloak asked
    /// before that write (a sync, a webhook consumer) cannot overwrite it afterwards.
    pub async fn finish_edit(&self, id: &str, lock: &WriteLock) -> Result<(), StoreError> {
        let mut u = Update::default();
        u.set("kc_observed_at", n(crate::base::clock::now_ms()));
        u.set_opt("pending_keycloak_write", None);
        u.set_opt(LOCK, None);
        u.set_opt(LOCK_UNTIL, None);
        self.release(id, u, lock).await
    }

    /// Keycloak did not confirm the edit `lock` holds: keep the record locked for it until
    /// `until` (epoch ms), showing `Pending::KeycloakWrite` since `since`, for the next sync run
    /// to read Keycloak back (`settle_edit`).
    pub async fn hold_edit(
        &self,
        id: &str,
        lock: &WriteLock,
        until: i64,
        since: i64,
    ) -> Result<(), StoreError> {
        let mut u = Update::default();
        u.set(LOCK_UNTIL, n(until));
        u.set("pending_keycloak_write", n(since));
        self.release(id, u, lock).await
    }

    /// Settle a held edit with what Keycloak holds now (read back after the edit's write could
    /// have landed): its Keycloak-owned fields and every kept business attribute (`names`) as
    /// Keycloak states them, a new version, and the lock released. The memberships stay as
    /// stored (an edit does not touch them).
    pub async fn settle_edit(
        &self,
        id: &str,
        lock: &WriteLock,
        fields: &KeycloakFields,
        attributes: &Attributes,
        names: &[String],
        now: i64,
    ) -> Result<(), StoreError> {
        let fields = fields.clone().normalized();
        let hash = fields.content_hash();
        let mut u = Update::default();
        write_identity(&mut u, id, &fields, &hash, now, now);
        for name in names {
            let key = attribute_key(name);
            match attributes.get(name) {
                Some(v) => u.set(&key, s(v.clone())),
                None => u.set_opt(&key, None),
            }
        }
        let (version, one) = (u.name("version"), u.value(n(1)));
        u.set_expr("version", format!("{version} + {one}"));
        u.set_opt("pending_keycloak_write", None);
        u.set_opt(LOCK, None);
        u.set_opt(LOCK_UNTIL, None);
        self.release(id, u, lock).await
    }

    /// The change Keycloak refused: write `old`'s fields back where `applied` changed them, as a
    /// new version (a version number never names two states), and release the lock.
    pub async fn undo_edit(
        &self,
        applied: &User,
        old: &User,
        lock: &WriteLock,
    ) -> Result<(), StoreError> {
        let mut u = diff_update(&applied.to_item()?, &old.to_item()?);
        let (version, one) = (u.name("version"), u.value(n(1)));
        u.set_expr("version", format!("{version} + {one}"));
        u.set_opt(LOCK, None);
        u.set_opt(LOCK_UNTIL, None);
        self.release(&applied.id, u, lock).await
    }

    pub(super) async fn release(
        &self,
        id: &str,
        mut u: Update,
        lock: &WriteLock,
    ) -> Result<(), StoreError> {
        let (owner, me) = (u.name(LOCK), u.value(s(lock.owner.clone())));
        let done = self
            .update_if(self.user_key(id), u, format!("{owner} = {me}"))
            .await?;
        if done {
            Ok(())
        } else {
            // The lock expired and someone else took over: nothing of ours to release.
            Err(StoreError::Locked)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outside::store::{Attributes, KeycloakFields, User};

    #[test]
    fn an_edit_writes_only_the_fields_that_differ() {
        let fields = KeycloakFields {
            username: "alice".into(),
            email: Some("alice@example.com".into()),
            enabled: true,
            ..Default::default()
        };
        let old = User::new("id-1", &fields, &Attributes::new(), 1000);
        let mut new = old.clone();
        new.keycloak.first_name = Some("Al".into());
        new.keycloak.email = None;
        let u = diff_update(&old.to_item().unwrap(), &new.to_item().unwrap());
        assert_eq!(
            u.expression(),
            "SET #first_name = :v0 REMOVE #email, #gsi2pk, #gsi2sk"
        );
    }
}
