//! `GET /admin/users`: user records listed by username or email prefix across the index shards,
//! with tamper-evident cursors.

use std::collections::HashMap;

use crate::base::deadline::Bounded;

use serde::{Deserialize, Serialize};

use super::table::{s, sdk_error, Item, Page, Store, StoreError};
use super::user_record::{shard, User, UserStatus};

pub(super) const SHARDS: &str = "0123456789abcdefghijklmnopqrstuvwxyz~";

/// Listing parameters of `GET /admin/users`.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub limit: usize,
    pub cursor: Option<String>,
    /// Prefix of the username, or of the email when it contains `@`.
    pub prefix: Option<String>,
    pub status: Option<UserStatus>,
}

impl ListQuery {
    fn status_filter(&self) -> &'static str {
        self.status.map(UserStatus::as_str).unwrap_or("")
    }
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
        // What a cursor belongs to: the same prefix and status filter.
        let fingerprint = format!("{}|{}", prefix.as_deref().unwrap_or(""), q.status_filter());
        let (mut shard_index, mut start) = match &q.cursor {
            None => (0, None),
            Some(c) => self.resume(c, &fingerprint, shards.len())?,
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
            let body = CursorBody {
                s: shard_index,
                k,
                q: fingerprint,
            };
            Some(self.seal_cursor(&body)?)
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// Where a cursor of this same query left off: the shard, and the key within it.
    fn resume(
        &self,
        cursor: &str,
        fingerprint: &str,
        shards: usize,
    ) -> Result<(usize, Option<Item>), StoreError> {
        let body: CursorBody = self.open_cursor(cursor)?;
        if body.q != fingerprint || body.s >= shards {
            return Err(StoreError::InvalidCursor);
        }
        let start = body
            .k
            .map(|k| k.into_iter().map(|(a, v)| (a, s(v))).collect::<Item>());
        Ok((body.s, start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_keep_usernames_in_a_few_partitions() {
        assert_eq!(shard("bob"), 'b');
        assert_eq!(shard("7up"), '7');
        assert_eq!(shard("_x"), '~');
        assert!(SHARDS.contains('~'));
    }
}
