//! Erasing a person from the whole table (a hard delete). What each item type holds of a person,
//! and what erasing does to it (the README's "Personal data" section says the same):
//!
//! | item | personal data | on erasure |
//! |---|---|---|
//! | user `PROFILE` | username, email, names, attributes, roles, groups, login times | a tombstone with the id, who deleted it and when (`User::erased`) |
//! | session `SESSION#<sid>` | IP address, user agent, times | deleted |
//! | idempotency pointer `IDEMPOTENCY#<hash>` under the user | none (names the record) | deleted, after the record it names is stripped |
//! | idempotency record | a hash of the registration's fields, the user id | stripped to `state: erased` (a replay of its key answers 410) |
//! | repair | the username or id a failed flow named | deleted when it names this user |
//! | audit record | ids only (actor, target), field names | kept: it says who did what, not to whom by name |
//! | attempt counter | a hash of a typed identifier, kept for one window | left to expire (its key is not the user's) |
//! | sync lease, state, runs | counts, run ids, errors naming ids | kept |
//! | webhook event taken | a digest of the event id | left to expire |

use crate::base::deadline::Bounded;

use super::idempotency::POINTER_PREFIX;
use super::repairs::RepairKind;
use super::table::{s, sdk_error, user_pk, Store, StoreError};

/// What erasing found and removed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Erased {
    pub sessions: usize,
    pub idempotency_records: usize,
    pub repairs: usize,
}

impl Store {
    /// Remove every item that holds personal data of the user `id` (whose username was
    /// `username`) other than the profile itself, which the caller turns into a tombstone.
    pub async fn erase_personal_data(
        &self,
        id: &str,
        username: &str,
    ) -> Result<Erased, StoreError> {
        let mut erased = Erased::default();
        for item in self.user_items(id, "").await? {
            let Some(sk) = item.get("sk").and_then(|v| v.as_s().ok()) else {
                continue;
            };
            if sk.starts_with("SESSION#") {
                erased.sessions += 1;
            } else if sk.starts_with(POINTER_PREFIX) {
                self.erase_idempotency(sk).await?;
                erased.idempotency_records += 1;
            } else {
                continue;
            }
            self.delete_item(id, sk).await?;
        }
        for repair in self.repairs().await? {
            let names_the_user = match &repair.kind {
                RepairKind::KeycloakUser {
                    username: u,
                    user_id,
                }
                | RepairKind::KeycloakSessions {
                    username: u,
                    user_id,
                    ..
                } => user_id.as_deref() == Some(id) || (!u.is_empty() && u == username),
                RepairKind::KeycloakEdit { user_id, .. } => user_id == id,
            };
            if names_the_user {
                self.delete_repair(&repair.id).await?;
                erased.repairs += 1;
            }
        }
        Ok(erased)
    }

    /// Every item of the user's partition whose sort key begins with `prefix` (all of them for
    /// an empty one), all pages.
    pub(crate) async fn user_items(
        &self,
        id: &str,
        prefix: &str,
    ) -> Result<Vec<super::table::Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(user_pk(id)));
            // An empty string cannot stand in a key condition: no prefix, the whole partition.
            if !prefix.is_empty() {
                query = query
                    .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                    .expression_attribute_values(":prefix", s(prefix));
            }
            let out = query
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .within_deadline()
                .await?
                .map_err(sdk_error)?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }

    async fn delete_item(&self, id: &str, sk: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(user_pk(id)))
            .key("sk", s(sk))
            .send()
            .within_deadline()
            .await?
            .map_err(sdk_error)?;
        Ok(())
    }
}
