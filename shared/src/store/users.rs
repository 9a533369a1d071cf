//! User records: Keycloak-owned identity fields (written only by a newer observation), business
//! attributes, admin edits under a write lock with versions that only grow, tombstones, and
//! listing with prefix search.

use crate::deadline::Bounded;
use std::collections::HashMap;

use aws_lc_rs::digest;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update as TxUpdate,
};
use serde::{Deserialize, Serialize};

use super::sessions::Session;
use super::{n, s, sdk_error, user_pk, written, Item, Store, StoreError, Update};
pub use crate::profile::Attributes;

pub const PROFILE: &str = "PROFILE";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    Active,
    Disabled,
    Deleted,
    Pending,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Disabled => "disabled",
            UserStatus::Deleted => "deleted",
            UserStatus::Pending => "pending",
        }
    }
}

/// A step of an applied change that Keycloak has yet to take; shown on the user (`pending`) until
/// a repair or a read completes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pending {
    /// The record was written without a full read of the user (a membership read failed): the
    /// next webhook or sync reads the user again.
    KeycloakRead,
    /// The user was disabled, deleted or given a new password here, and their Keycloak sessions
    /// are still to be ended (the next sync run's repair does it).
    KeycloakLogout,
    /// An admin's edit whose Keycloak write was not confirmed (a timeout, a 5xx): the record
    /// stays locked for it until the next sync run reads Keycloak back and records what it holds.
    KeycloakWrite,
}

/// The fields Keycloak owns. The bulk sync compares their hash to skip unchanged users.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct KeycloakFields {
    pub username: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub enabled: bool,
    pub email_verified: bool,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
}

impl KeycloakFields {
    /// Roles and groups sorted and de-duplicated, so equal content hashes equally.
    pub fn normalized(mut self) -> Self {
        self.roles.sort();
        self.roles.dedup();
        self.groups.sort();
        self.groups.dedup();
        self
    }

    /// SHA-256 of the canonical JSON of the normalized fields, hex.
    pub fn content_hash(&self) -> String {
        hex::encode(self.content_digest())
    }

    /// The first 8 bytes of the content hash: what the full sync holds per user to compare (a
    /// changed user whose new hash shares its first 64 bits with the old one: 1 in 2^64).
    pub fn content_key(&self) -> [u8; 8] {
        let mut key = [0u8; 8];
        key.copy_from_slice(&self.content_digest().as_ref()[..8]);
        key
    }

    fn content_digest(&self) -> digest::Digest {
        let canonical = serde_json::to_vec(&self.clone().normalized()).unwrap_or_default();
        digest::digest(&digest::SHA256, &canonical)
    }

    fn status(&self) -> UserStatus {
        if self.enabled {
            UserStatus::Active
        } else {
            UserStatus::Disabled
        }
    }
}

/// `kc_hash` of a record written without a full read of the user (never a hex digest).
pub const UNREAD_HASH: &str = "unread";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    /// Empty on the tombstone of a hard-deleted user, which keeps no personal data.
    #[serde(default)]
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub email_verified: bool,
    pub status: UserStatus,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Business attributes (`USER_ATTRIBUTES`), stored as top-level `attr_<name>` attributes so
    /// that each can be written on its own.
    #[serde(skip)]
    pub attributes: Attributes,
    #[serde(default)]
    pub created_at: i64,
    #[serde(default)]
    pub updated_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_login_at: Option<i64>,
    #[serde(default)]
    pub login_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<i64>,
    /// Why the record is deleted: an admin's decision (`admin`) stays; a user the sync found
    /// missing in Keycloak (`missing_in_keycloak`) comes back if Keycloak has them again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_reason: Option<String>,
    /// Who deleted the user (an admin's user id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_by: Option<String>,
    /// Hash of the Keycloak-owned fields as last written.
    #[serde(default)]
    pub kc_hash: String,
    /// Since when (epoch ms) the user's Keycloak sessions wait to be ended (`Pending::KeycloakLogout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_keycloak_logout: Option<i64>,
    /// Since when (epoch ms) an admin's edit waits for Keycloak to be read back
    /// (`Pending::KeycloakWrite`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_keycloak_write: Option<i64>,
    /// When the Keycloak state last written was observed (epoch ms): older observations lose.
    #[serde(default)]
    pub kc_observed_at: i64,
    pub version: u64,
}

impl User {
    /// A new record from Keycloak's fields and the business attributes, as first written.
    pub fn new(
        id: &str,
        fields: &KeycloakFields,
        attributes: &Attributes,
        observed_at: i64,
    ) -> Self {
        let f = fields.clone().normalized();
        User {
            id: id.to_owned(),
            status: f.status(),
            kc_hash: f.content_hash(),
            pending_keycloak_logout: None,
            pending_keycloak_write: None,
            username: f.username,
            email: f.email,
            first_name: f.first_name,
            last_name: f.last_name,
            enabled: f.enabled,
            email_verified: f.email_verified,
            roles: f.roles,
            groups: f.groups,
            attributes: attributes.clone(),
            created_at: observed_at,
            updated_at: observed_at,
            last_login_at: None,
            login_count: 0,
            last_synced_at: None,
            deleted_at: None,
            deleted_reason: None,
            deleted_by: None,
            kc_observed_at: observed_at,
            version: 1,
        }
    }

    /// Mark the record's Keycloak state as not fully read (a membership read failed when it was
    /// written): no observation is older, no content hash equal, so the next read of the user
    /// (webhook, incremental or full sync) writes it, and the echo check never vouches for it.
    pub fn mark_unread(&mut self) {
        self.kc_hash = UNREAD_HASH.to_owned();
        self.kc_observed_at = 0;
    }

    /// Whether the record waits for a read of the user from Keycloak (`mark_unread`).
    pub fn is_unread(&self) -> bool {
        self.kc_hash == UNREAD_HASH
    }

    /// What Keycloak has yet to do for this record.
    pub fn pending(&self) -> Vec<Pending> {
        let mut pending = Vec::new();
        if self.is_unread() {
            pending.push(Pending::KeycloakRead);
        }
        if self.pending_keycloak_logout.is_some() {
            pending.push(Pending::KeycloakLogout);
        }
        if self.pending_keycloak_write.is_some() {
            pending.push(Pending::KeycloakWrite);
        }
        pending
    }

    pub fn keycloak_fields(&self) -> KeycloakFields {
        KeycloakFields {
            username: self.username.clone(),
            email: self.email.clone(),
            first_name: self.first_name.clone(),
            last_name: self.last_name.clone(),
            enabled: self.enabled,
            email_verified: self.email_verified,
            roles: self.roles.clone(),
            groups: self.groups.clone(),
        }
    }

    /// What is left of a user an admin deleted for good: the id, when and by whom. No personal
    /// data (name, email, attributes, roles) survives a hard delete.
    pub fn erased(&self, deleted_by: &str, now: i64) -> Self {
        User {
            id: self.id.clone(),
            username: String::new(),
            email: None,
            first_name: None,
            last_name: None,
            enabled: false,
            email_verified: false,
            status: UserStatus::Deleted,
            roles: Vec::new(),
            groups: Vec::new(),
            attributes: Attributes::new(),
            created_at: 0,
            updated_at: now,
            last_login_at: None,
            login_count: 0,
            last_synced_at: None,
            deleted_at: Some(now),
            deleted_reason: Some(DELETED_BY_ADMIN.into()),
            deleted_by: Some(deleted_by.to_owned()),
            kc_hash: String::new(),
            pending_keycloak_logout: self.pending_keycloak_logout,
            pending_keycloak_write: None,
            kc_observed_at: now,
            version: self.version + 1,
        }
    }

    /// Whether this is what a hard delete leaves: a tombstone with no personal data.
    pub fn is_tombstone(&self) -> bool {
        self.status == UserStatus::Deleted && self.username.is_empty()
    }

    /// The stored item: the record plus its keys and index keys (none for a tombstone without a
    /// username, so it is never listed).
    pub fn to_item(&self) -> Result<Item, StoreError> {
        let mut item: Item =
            serde_dynamo::to_item(self).map_err(|e| StoreError::Other(e.to_string()))?;
        item.insert("pk".into(), s(user_pk(&self.id)));
        item.insert("sk".into(), s(PROFILE));
        if !self.username.is_empty() {
            for (k, v) in index_keys(&self.username, self.email.as_deref()) {
                item.insert(k.into(), s(v));
            }
        }
        for (name, value) in &self.attributes {
            item.insert(attribute_key(name), s(value.clone()));
        }
        Ok(item)
    }

    pub fn from_item(mut item: Item) -> Result<Self, StoreError> {
        let attributes: Attributes = item
            .iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix(ATTRIBUTE_PREFIX)?;
                Some((name.to_owned(), v.as_s().ok()?.clone()))
            })
            .collect();
        item.retain(|k, _| !k.starts_with(ATTRIBUTE_PREFIX));
        let mut user: User = serde_dynamo::from_item(item)
            .map_err(|e| StoreError::Other(format!("bad user item: {e}")))?;
        user.attributes = attributes;
        Ok(user)
    }
}

const ATTRIBUTE_PREFIX: &str = "attr_";

/// The item attribute holding business attribute `name`.
fn attribute_key(name: &str) -> String {
    format!("{ATTRIBUTE_PREFIX}{name}")
}

/// An admin write in flight: who holds it, until when (epoch ms). A crashed writer's lock
/// expires with its invocation, and the next writer takes over.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteLock {
    pub owner: String,
    pub until: i64,
}

/// Whether an item's admin write lock is held at `now`.
fn locked_at(item: &Item, now: i64) -> bool {
    item.contains_key(LOCK)
        && item
            .get(LOCK_UNTIL)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|until| until >= now)
}

const LOCK: &str = "write_lock";
const LOCK_UNTIL: &str = "write_lock_until";

/// SET every attribute whose value differs from `from` to `to`, REMOVE those `to` lacks.
/// Keys and the version are left to the caller.
fn diff_update(from: &Item, to: &Item) -> Update {
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

/// Why a record is deleted: an admin's decision stays.
pub const DELETED_BY_ADMIN: &str = "admin";

/// Index shards by first character, so no single index partition takes every user write.
fn shard(value: &str) -> char {
    value
        .chars()
        .next()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        .unwrap_or('~')
}

const SHARDS: &str = "0123456789abcdefghijklmnopqrstuvwxyz~";

fn index_keys(username: &str, email: Option<&str>) -> Vec<(&'static str, String)> {
    let mut keys = vec![
        ("gsi1pk", format!("USERNAME#{}", shard(username))),
        ("gsi1sk", username.to_owned()),
    ];
    if let Some(e) = email {
        keys.push(("gsi2pk", format!("EMAIL#{}", shard(e))));
        keys.push(("gsi2sk", e.to_owned()));
    }
    keys
}

/// What `apply_keycloak_fields` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    Created,
    Updated,
    /// Same content as stored: nothing written.
    Unchanged,
    /// A user the sync had marked missing is back in Keycloak.
    Reactivated,
    /// A newer observation is stored already, or an admin deleted the user locally.
    Skipped,
}

pub const MISSING_IN_KEYCLOAK: &str = "missing_in_keycloak";

/// Listing parameters of `GET /admin/users`.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub limit: usize,
    pub cursor: Option<String>,
    /// Prefix of the username, or of the email when it contains `@`.
    pub prefix: Option<String>,
    pub status: Option<UserStatus>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A login: the identity as the fresh access token states it, and the session it opened.
#[derive(Clone, Debug)]
pub struct LoginRecord {
    pub user_id: String,
    pub fields: KeycloakFields,
    pub attributes: Attributes,
    pub at: i64,
}

#[derive(Serialize, Deserialize)]
struct CursorBody {
    /// Index of the shard being read.
    s: usize,
    /// LastEvaluatedKey within it (string attributes only).
    k: Option<HashMap<String, String>>,
    /// The query the cursor belongs to.
    q: String,
}

impl Store {
    fn user_key(&self, id: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([("pk".into(), s(user_pk(id))), ("sk".into(), s(PROFILE))])
    }

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
                let current = e.as_service_error().and_then(|se| match se {
                    aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c) => {
                        Some(c.item.clone().unwrap_or_default())
                    }
                    _ => None,
                });
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
        u.set("kc_observed_at", n(crate::clock::now_ms()));
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

    async fn release(&self, id: &str, mut u: Update, lock: &WriteLock) -> Result<(), StoreError> {
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
            Ok(out) => Ok(match out.attributes {
                Some(old)
                    if old
                        .get("status")
                        .and_then(|v| v.as_s().ok())
                        .map(String::as_str)
                        == Some("deleted") =>
                {
                    ApplyOutcome::Reactivated
                }
                Some(old) if old.contains_key("version") => ApplyOutcome::Updated,
                _ => ApplyOutcome::Created,
            }),
            Err(e) => {
                let old = e.as_service_error().and_then(|se| match se {
                    aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c) => {
                        Some(c.item.clone().unwrap_or_default())
                    }
                    _ => None,
                });
                match old {
                    Some(old) if locked_at(&old, now) => Err(StoreError::Locked),
                    Some(old) => {
                        let same = old.get("kc_hash").and_then(|v| v.as_s().ok()) == Some(&hash);
                        Ok(if same {
                            ApplyOutcome::Unchanged
                        } else {
                            ApplyOutcome::Skipped
                        })
                    }
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

    /// A login in one round trip: the user's identity as the token states it (a login is always
    /// the newest observation), `last_login_at` and `login_count`, and the new session.
    pub async fn record_login(
        &self,
        login: &LoginRecord,
        session: &Session,
    ) -> Result<(), StoreError> {
        self.write_login(login, session, false).await
    }

    /// `record_login` for a session that must not be on record yet (an app's sync of a Keycloak
    /// session): `AlreadyExists` when another call recorded it first, and nothing is written.
    pub async fn record_login_of_new_session(
        &self,
        login: &LoginRecord,
        session: &Session,
    ) -> Result<(), StoreError> {
        self.write_login(login, session, true).await
    }

    async fn write_login(
        &self,
        login: &LoginRecord,
        session: &Session,
        new_session_only: bool,
    ) -> Result<(), StoreError> {
        let fields = login.fields.clone().normalized();
        let hash = fields.content_hash();
        let mut u = Update::default();
        write_identity(&mut u, &login.user_id, &fields, &hash, login.at, login.at);
        // Only what the token states: a claim missing (say, a mapper not configured) never
        // erases local business data.
        for (name, value) in &login.attributes {
            u.set(&attribute_key(name), s(value.clone()));
        }
        u.set("last_login_at", n(login.at));
        let (created, now) = (u.name("created_at"), u.value(n(login.at)));
        u.set_expr("created_at", format!("if_not_exists({created}, {now})"));
        let (count, zero, one) = (u.name("login_count"), u.value(n(0)), u.value(n(1)));
        u.set_expr(
            "login_count",
            format!("if_not_exists({count}, {zero}) + {one}"),
        );
        bump_version(&mut u);
        // A user the sync marked missing whom Keycloak has just signed in is back (the grant is
        // Keycloak's confirmation); an admin's delete stays, and refuses the login.
        u.set_opt("deleted_at", None);
        u.set_opt("deleted_reason", None);
        u.set_opt("deleted_by", None);
        let (status, deleted) = (u.name("status"), u.value(s("deleted")));
        let (reason, missing) = (u.name("deleted_reason"), u.value(s(MISSING_IN_KEYCLOAK)));
        let user_update = TxUpdate::builder()
            .table_name(&self.table)
            .set_key(Some(self.user_key(&login.user_id)))
            .update_expression(u.expression())
            .condition_expression(format!(
                "attribute_not_exists(pk) OR {status} <> {deleted} OR {reason} = {missing}"
            ))
            .set_expression_attribute_names(Some(u.names))
            .set_expression_attribute_values(Some(u.values))
            .build()
            .map_err(|e| StoreError::Other(e.to_string()))?;
        let session_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(session.to_item()?))
            .set_condition_expression(
                new_session_only.then(|| "attribute_not_exists(pk)".to_owned()),
            )
            .build()
            .map_err(|e| StoreError::Other(e.to_string()))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(user_update).build())
            .transact_items(TransactWriteItem::builder().put(session_put).build())
            .send()
            .within_deadline()
            .await?;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                // Which write's condition refused it: the user's (deleted here) or the session's.
                let refused = |index: usize| {
                    e.as_service_error().is_some_and(|se| {
                        matches!(se, aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(t)
                            if t.cancellation_reasons().get(index).and_then(|r| r.code()) == Some("ConditionalCheckFailed"))
                    })
                };
                if refused(0) {
                    Err(StoreError::UserDeleted)
                } else if refused(1) {
                    Err(StoreError::AlreadyExists)
                } else {
                    Err(sdk_error(e))
                }
            }
        }
    }

    /// The username of the one account with this email (lowercase, as Keycloak stores it), by
    /// the email index; `None` when no account or several have it.
    pub async fn username_of_email(&self, email: &str) -> Result<Option<String>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("GSI2")
            .key_condition_expression("gsi2pk = :pk AND gsi2sk = :email")
            .expression_attribute_values(":pk", s(format!("EMAIL#{}", shard(email))))
            .expression_attribute_values(":email", s(email))
            .projection_expression("username")
            .limit(2)
            .send()
            .within_deadline()
            .await?
            .map_err(sdk_error)?;
        let found: Vec<String> = out
            .items
            .unwrap_or_default()
            .into_iter()
            .filter_map(|mut i| i.remove("username")?.as_s().ok().cloned())
            .collect();
        Ok(match found.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        })
    }

    /// One page of users: by username (or email when the prefix has an `@`), optionally filtered
    /// by status. The cursor is opaque and signed; a tampered one is `InvalidCursor`.
    pub async fn list_users(&self, q: &ListQuery) -> Result<Page<User>, StoreError> {
        let limit = q.limit.clamp(1, 200);
        let prefix = q
            .prefix
            .as_deref()
            .map(str::to_lowercase)
            .filter(|p| !p.is_empty());
        let by_email = prefix.as_deref().is_some_and(|p| p.contains('@'));
        let (index, pk_attr, sk_attr, pk_prefix) = if by_email {
            ("GSI2", "gsi2pk", "gsi2sk", "EMAIL#")
        } else {
            ("GSI1", "gsi1pk", "gsi1sk", "USERNAME#")
        };
        let shards: Vec<char> = match &prefix {
            Some(p) => vec![shard(p)],
            None => SHARDS.chars().collect(),
        };
        let fingerprint = format!(
            "{}|{}",
            prefix.as_deref().unwrap_or(""),
            q.status.map(UserStatus::as_str).unwrap_or("")
        );
        let (mut shard_index, mut start) = match &q.cursor {
            None => (0, None),
            Some(c) => {
                let body: CursorBody = self.open_cursor(c)?;
                if body.q != fingerprint || body.s >= shards.len() {
                    return Err(StoreError::InvalidCursor);
                }
                (
                    body.s,
                    body.k
                        .map(|k| k.into_iter().map(|(a, v)| (a, s(v))).collect::<Item>()),
                )
            }
        };
        let mut items = Vec::new();
        while shard_index < shards.len() && items.len() < limit {
            let mut values = HashMap::from([(
                ":pk".to_owned(),
                s(format!("{pk_prefix}{}", shards[shard_index])),
            )]);
            let mut key_condition = format!("{pk_attr} = :pk");
            if let Some(p) = &prefix {
                key_condition.push_str(&format!(" AND begins_with({sk_attr}, :prefix)"));
                values.insert(":prefix".into(), s(p.clone()));
            }
            let mut req = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .key_condition_expression(key_condition)
                .limit((limit - items.len()) as i32)
                .set_exclusive_start_key(start.take());
            if let Some(st) = q.status {
                req = req
                    .filter_expression("#status = :status")
                    .expression_attribute_names("#status", "status");
                values.insert(":status".into(), s(st.as_str()));
            }
            let out = req
                .set_expression_attribute_values(Some(values))
                .send()
                .within_deadline()
                .await?
                .map_err(sdk_error)?;
            for item in out.items.unwrap_or_default() {
                items.push(User::from_item(item)?);
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => shard_index += 1,
            }
        }
        let next_cursor = if shard_index < shards.len() {
            let k = start.map(|k| {
                k.into_iter()
                    .filter_map(|(a, v)| v.as_s().ok().map(|v| (a, v.clone())))
                    .collect()
            });
            Some(self.seal_cursor(&CursorBody {
                s: shard_index,
                k,
                q: fingerprint,
            })?)
        } else {
            None
        };
        Ok(Page { items, next_cursor })
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
                set.spawn(async move {
                    let created = store.create_user(&user).await;
                    (user, created)
                });
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

/// Conditional puts a first sync keeps in flight (`create_users_if_absent`).
pub const CREATE_CONCURRENCY: usize = 16;

/// SET the Keycloak-owned fields, their hash and observation time, status and index keys.
fn write_identity(
    u: &mut Update,
    id: &str,
    f: &KeycloakFields,
    hash: &str,
    observed_at: i64,
    now: i64,
) {
    u.set("id", s(id));
    u.set("username", s(f.username.clone()));
    u.set_opt("email", f.email.as_deref());
    u.set_opt("first_name", f.first_name.as_deref());
    u.set_opt("last_name", f.last_name.as_deref());
    u.set("enabled", AttributeValue::Bool(f.enabled));
    u.set("email_verified", AttributeValue::Bool(f.email_verified));
    u.set(
        "roles",
        AttributeValue::L(f.roles.iter().map(|r| s(r.clone())).collect()),
    );
    u.set(
        "groups",
        AttributeValue::L(f.groups.iter().map(|g| s(g.clone())).collect()),
    );
    u.set("status", s(f.status().as_str()));
    u.set("kc_hash", s(hash));
    u.set("kc_observed_at", n(observed_at));
    u.set("last_synced_at", n(now));
    u.set("updated_at", n(now));
    for (k, v) in index_keys(&f.username, f.email.as_deref()) {
        u.set(k, s(v));
    }
    if f.email.is_none() {
        u.set_opt("gsi2pk", None);
        u.set_opt("gsi2sk", None);
    }
}

fn bump_version(u: &mut Update) {
    let (version, zero, one) = (u.name("version"), u.value(n(0)), u.value(n(1)));
    u.set_expr(
        "version",
        format!("if_not_exists({version}, {zero}) + {one}"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> KeycloakFields {
        KeycloakFields {
            username: "alice".into(),
            email: Some("alice@example.com".into()),
            enabled: true,
            roles: vec!["user".into(), "admin".into(), "user".into()],
            ..Default::default()
        }
    }

    #[test]
    fn content_hash_ignores_role_order_and_duplicates() {
        let mut other = fields();
        other.roles = vec!["admin".into(), "user".into()];
        assert_eq!(fields().content_hash(), other.content_hash());
        other.enabled = false;
        assert_ne!(fields().content_hash(), other.content_hash());
    }

    #[test]
    fn user_item_round_trips_with_keys() {
        let u = User::new(
            "id-1",
            &fields(),
            &Attributes::from([("title".to_owned(), "CTO".to_owned())]),
            1000,
        );
        let item = u.to_item().unwrap();
        assert_eq!(item["pk"].as_s().unwrap(), "USER#id-1");
        assert_eq!(item["gsi1pk"].as_s().unwrap(), "USERNAME#a");
        assert_eq!(item["gsi2sk"].as_s().unwrap(), "alice@example.com");
        assert_eq!(item["attr_title"].as_s().unwrap(), "CTO");
        assert!(
            !item.contains_key("attr_phone"),
            "absent attributes are not written as NULL"
        );
        assert_eq!(User::from_item(item).unwrap(), u);
    }

    #[test]
    fn a_hard_delete_tombstone_keeps_no_personal_data() {
        let u = User::new(
            "id-1",
            &fields(),
            &Attributes::from([("phone".to_owned(), "+1".to_owned())]),
            1000,
        );
        let item = u.erased("admin-7", 2000).to_item().unwrap();
        let mut keys: Vec<&str> = item.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "created_at",
                "deleted_at",
                "deleted_by",
                "deleted_reason",
                "email_verified",
                "enabled",
                "groups",
                "id",
                "kc_hash",
                "kc_observed_at",
                "login_count",
                "pk",
                "roles",
                "sk",
                "status",
                "updated_at",
                "username",
                "version"
            ]
        );
        assert_eq!(item["username"].as_s().unwrap(), "");
        assert!(item["roles"].as_l().unwrap().is_empty());
    }

    #[test]
    fn an_edit_writes_only_the_fields_that_differ() {
        let old = User::new("id-1", &fields(), &Attributes::new(), 1000);
        let mut new = old.clone();
        new.first_name = Some("Al".into());
        new.email = None;
        let u = diff_update(&old.to_item().unwrap(), &new.to_item().unwrap());
        assert_eq!(
            u.expression(),
            "SET #first_name = :v0 REMOVE #email, #gsi2pk, #gsi2sk"
        );
    }

    #[test]
    fn shards_keep_usernames_in_a_few_partitions() {
        assert_eq!(shard("bob"), 'b');
        assert_eq!(shard("7up"), '7');
        assert_eq!(shard("_x"), '~');
        assert!(SHARDS.contains('~'));
    }
}
