//! Audit records of admin actions: one item per action under its target (`AUDIT#<target>`), sorted
//! by time, with the actor in GSI3 so either side can be listed newest first; kept for
//! `AUDIT_RETENTION_DAYS` (TTL).

use crate::base::clock::EpochSecs;
use crate::base::deadline::Bounded;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::table::{s, sdk_error, Item, Page, Store, StoreError};

/// One admin action. Field names only — never a value, never a password.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub at: i64,
    pub request_id: String,
    /// Ids only: the actor's username is read from their record when the trail is listed, so an
    /// erased person's name is nowhere in the trail.
    pub actor_id: String,
    pub action: String,
    /// The user acted on, or `sync` for bulk-sync control.
    pub target_id: String,
    #[serde(default)]
    pub fields: Vec<String>,
    /// `succeeded`, `forbidden`, `refused:<problem code>` (input the route refused before acting)
    /// or `failed:<problem code>`.
    pub outcome: String,
    /// Epoch seconds (TTL).
    pub expires_at: EpochSecs,
}

/// What to list: a target's records, an actor's, or an actor's on one target.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub target: Option<String>,
    pub actor: Option<String>,
    pub limit: usize,
    pub cursor: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct AuditCursor {
    /// LastEvaluatedKey (string attributes only).
    k: HashMap<String, String>,
    /// The query the cursor belongs to.
    q: String,
}

fn sort_key(r: &AuditRecord) -> String {
    format!("{:013}#{}", r.at, r.request_id)
}

impl Store {
    pub async fn put_audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        let sk = sort_key(record);
        let keys = [
            ("pk".into(), s(format!("AUDIT#{}", record.target_id))),
            ("sk".into(), s(sk.clone())),
            (
                "gsi3pk".into(),
                s(format!("AUDIT_ACTOR#{}", record.actor_id)),
            ),
            ("gsi3sk".into(), s(sk)),
        ];
        self.put_record(record, keys).await
    }

    /// Newest first. By target (the table), by actor (GSI3), or both (the target's records
    /// filtered by actor).
    pub async fn list_audit(&self, q: &AuditQuery) -> Result<Page<AuditRecord>, StoreError> {
        let fingerprint = format!(
            "{}|{}",
            q.target.as_deref().unwrap_or(""),
            q.actor.as_deref().unwrap_or("")
        );
        let mut start = match &q.cursor {
            None => None,
            Some(c) => {
                let body: AuditCursor = self.open_cursor(c)?;
                if body.q != fingerprint {
                    return Err(StoreError::InvalidCursor);
                }
                Some(body.k.into_iter().map(|(k, v)| (k, s(v))).collect::<Item>())
            }
        };
        let limit = q.limit.clamp(1, 200);
        let mut items = Vec::new();
        // A filter (actor within a target) can leave a page short: read on until it is full.
        loop {
            let mut req = self
                .client
                .query()
                .table_name(&self.table)
                .scan_index_forward(false)
                .limit((limit - items.len()) as i32)
                .set_exclusive_start_key(start.take());
            req = match (&q.target, &q.actor) {
                (Some(target), actor) => {
                    let req = req
                        .key_condition_expression("pk = :pk")
                        .expression_attribute_values(":pk", s(format!("AUDIT#{target}")));
                    match actor {
                        Some(a) => req
                            .filter_expression("actor_id = :actor")
                            .expression_attribute_values(":actor", s(a.clone())),
                        None => req,
                    }
                }
                (None, Some(actor)) => req
                    .index_name("GSI3")
                    .key_condition_expression("gsi3pk = :pk")
                    .expression_attribute_values(":pk", s(format!("AUDIT_ACTOR#{actor}"))),
                (None, None) => {
                    return Err(StoreError::Other(
                        "an audit query needs a target or an actor".into(),
                    ))
                }
            };
            let out = req.send().within_deadline().await?.map_err(sdk_error)?;
            for item in out.items.unwrap_or_default() {
                items.push(
                    serde_dynamo::from_item(item).map_err(|e| StoreError::Other(e.to_string()))?,
                );
            }
            start = out.last_evaluated_key.filter(|k| !k.is_empty());
            if start.is_none() || items.len() >= limit {
                break;
            }
        }
        let next_cursor = match start {
            Some(k) => Some(
                self.seal_cursor(&AuditCursor {
                    k: k.into_iter()
                        .filter_map(|(a, v)| v.as_s().ok().map(|v| (a, v.clone())))
                        .collect(),
                    q: fingerprint,
                })?,
            ),
            None => None,
        };
        Ok(Page { items, next_cursor })
    }
}
