//! The user record: Keycloak-owned identity fields (written only by a newer observation), with
//! their content hash, business attributes, status, tombstones, and the record as a DynamoDB item
//! with its index keys.

use std::collections::HashMap;

use aws_lc_rs::digest;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use super::table::{n, s, user_pk, Item, Store, StoreError, Update};

/// Business attribute values by name: kept in the store and as Keycloak user attributes.
pub type Attributes = std::collections::BTreeMap<String, String>;

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

/// A user's identity as Keycloak owns it: the one type the record (`User`), the API's view, the
/// syncs' observations and a token's claims are built from. The bulk sync compares its hash to
/// skip unchanged users. In a stored record these are top-level attributes (flattened).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct KeycloakFields {
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
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// What the content hash is taken of: every field, an absent one as `null`, in this order (the
/// hash every stored record holds; a spec pins it).
#[derive(Serialize)]
struct Canonical<'a> {
    username: &'a str,
    email: &'a Option<String>,
    first_name: &'a Option<String>,
    last_name: &'a Option<String>,
    enabled: bool,
    email_verified: bool,
    roles: &'a [String],
    groups: &'a [String],
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
        let f = self.clone().normalized();
        let canonical = serde_json::to_vec(&Canonical {
            username: &f.username,
            email: &f.email,
            first_name: &f.first_name,
            last_name: &f.last_name,
            enabled: f.enabled,
            email_verified: f.email_verified,
            roles: &f.roles,
            groups: &f.groups,
        })
        .unwrap_or_default();
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
    /// The identity as Keycloak last had it (all of it empty on a tombstone).
    #[serde(flatten)]
    pub keycloak: KeycloakFields,
    pub status: UserStatus,
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
    /// When this API's registration recorded the user (epoch ms); absent on a record the sync or
    /// a webhook imported. A registration's retry adopts the Keycloak user its earlier attempt
    /// created only while no registration has recorded it (`users::adoptable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_at: Option<i64>,
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
            keycloak: f,
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
            registered_at: None,
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

    /// What is left of a user an admin deleted for good: the id, when and by whom. No personal
    /// data (name, email, attributes, roles) survives a hard delete.
    pub fn erased(&self, deleted_by: &str, now: i64) -> Self {
        User {
            id: self.id.clone(),
            keycloak: KeycloakFields::default(),
            status: UserStatus::Deleted,
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
            registered_at: None,
            version: self.version + 1,
        }
    }

    /// Whether this is what a hard delete leaves: a tombstone with no personal data.
    pub fn is_tombstone(&self) -> bool {
        self.status == UserStatus::Deleted && self.keycloak.username.is_empty()
    }

    /// The stored item: the record plus its keys and index keys (none for a tombstone without a
    /// username, so it is never listed).
    pub fn to_item(&self) -> Result<Item, StoreError> {
        let mut item: Item =
            serde_dynamo::to_item(self).map_err(|e| StoreError::Other(e.to_string()))?;
        item.insert("pk".into(), s(user_pk(&self.id)));
        item.insert("sk".into(), s(PROFILE));
        if !self.keycloak.username.is_empty() {
            for (k, v) in index_keys(&self.keycloak.username, self.keycloak.email.as_deref()) {
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

pub(super) const ATTRIBUTE_PREFIX: &str = "attr_";

/// The item attribute holding business attribute `name`.
pub(super) fn attribute_key(name: &str) -> String {
    format!("{ATTRIBUTE_PREFIX}{name}")
}

/// Why a record is deleted: an admin's decision stays.
pub const DELETED_BY_ADMIN: &str = "admin";

/// Index shards by first character, so no single index partition takes every user write.
pub(super) fn shard(value: &str) -> char {
    value
        .chars()
        .next()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        .unwrap_or('~')
}

pub(super) fn index_keys(username: &str, email: Option<&str>) -> Vec<(&'static str, String)> {
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

/// SET the Keycloak-owned fields, their hash and observation time, status and index keys.
pub(super) fn write_identity(
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

pub(super) fn bump_version(u: &mut Update) {
    let (version, zero, one) = (u.name("version"), u.value(n(0)), u.value(n(1)));
    u.set_expr(
        "version",
        format!("if_not_exists({version}, {zero}) + {one}"),
    );
}

impl Store {
    pub(super) fn user_key(&self, id: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([("pk".into(), s(user_pk(id))), ("sk".into(), s(PROFILE))])
    }
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
    fn the_content_hash_of_a_record_is_what_records_already_stored_hold() {
        // Every stored record holds this hash of its Keycloak fields: a change to how it is
        // computed would make every user look changed to the next sync.
        assert_eq!(
            fields().content_hash(),
            "b0a6b60a3df2b330eb9de66fe81a3986317daabb89c5ca59078859bd76f56d26"
        );
    }

    #[test]
    fn a_user_item_holds_exactly_the_attributes_records_already_stored_hold() {
        let bare = KeycloakFields {
            username: "bob".into(),
            ..Default::default()
        };
        let mut names: Vec<String> = User::new("id-2", &bare, &Attributes::new(), 1000)
            .to_item()
            .unwrap()
            .into_keys()
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "created_at",
                "email_verified",
                "enabled",
                "groups",
                "gsi1pk",
                "gsi1sk",
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
}
