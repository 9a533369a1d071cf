//! The store as the full sync reads it: per user only its id, content hash and status, from the
//! `SyncDigest` index (DESIGN §6, README "Bulk sync").
//!
//! `SyncDigest` has the keys of GSI1 (present on user records only, so the index holds users and
//! nothing else) and projects `kc_hash`, `status` and `deleted_reason`: an index item is ~160
//! bytes where a user record is ~470 bytes or more (make bench), and DynamoDB bills a scan by the
//! bytes it reads, so the index costs a third of a table scan (which also reads every session,
//! audit record and counter). The observation time is not needed to diff: the write that follows a difference is
//! conditional on it. The index is eventually consistent: a record written moments ago can be
//! missing from it, so a user the digest does not have is written with "create if absent", never
//! with a blind put.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use tokio::sync::mpsc;

use super::table::{sdk_error, Item, Store, StoreError};
use super::user_record::MISSING_IN_KEYCLOAK;
use crate::base::deadline::{self, Bounded};

pub const SYNC_INDEX: &str = "SyncDigest";

/// Items per scan page. DynamoDB's own cap is 1 MB (~6 500 index items), which only a large table
/// fills, so with it the pages the SDK has parsed (every item a map of strings) grew with the
/// table up to that size. A fixed count keeps them the same at any size; the read units are the
/// same (billed by bytes read), only the number of requests grows (100 for 100 000 users).
const PAGE_ITEMS: i32 = 1_000;

/// A stored user's state, as far as the sync cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredState {
    Active,
    Pending,
    Disabled,
    /// Deleted by an admin: the sync leaves it alone.
    DeletedByAdmin,
    /// Marked missing by a sync: comes back if Keycloak has the user again.
    Missing,
}

/// One stored user in 9 bytes: the first 8 bytes of its content hash, and its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digest {
    pub hash: [u8; 8],
    pub state: StoredState,
}

fn digest_of(item: &Item) -> Option<(String, Digest)> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str);
    let id = text("pk")?.strip_prefix("USER#")?.to_owned();
    let state = match (text("status"), text("deleted_reason")) {
        (Some("deleted"), Some(MISSING_IN_KEYCLOAK)) => StoredState::Missing,
        (Some("deleted"), _) => StoredState::DeletedByAdmin,
        (Some("disabled"), _) => StoredState::Disabled,
        (Some("pending"), _) => StoredState::Pending,
        _ => StoredState::Active,
    };
    // A hash that does not parse matches no content: the user is rewritten.
    let hash = text("kc_hash").and_then(hex8).unwrap_or_default();
    Some((id, Digest { hash, state }))
}

fn hex8(text: &str) -> Option<[u8; 8]> {
    let mut out = [0u8; 8];
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    hex::decode_to_slice(&text[..16], &mut out).ok()?;
    Some(out)
}

impl Store {
    /// Every stored user's digest, read by a parallel scan of the `SyncDigest` index in segments
    /// of about `SEGMENT_ITEMS` users for the `expected_users` (`digest_segments`), at most
    /// `SCANS_IN_FLIGHT` at a time, and handed to `apply` page by page as (user id, digest) (no
    /// page outlives its conversion, and at most one converted page per scan in flight waits).
    pub async fn scan_digest(
        &self,
        expected_users: u64,
        mut apply: impl FnMut(&str, Digest),
    ) -> Result<(), StoreError> {
        let segments = digest_segments(expected_users);
        let next = std::sync::Arc::new(std::sync::atomic::AtomicI32::new(0));
        let (tx, mut rx) =
            mpsc::channel::<Result<Vec<(String, Digest)>, StoreError>>(SCANS_IN_FLIGHT);
        for _ in 0..SCANS_IN_FLIGHT.min(segments as usize) {
            let (store, tx, next) = (self.clone(), tx.clone(), next.clone());
            tokio::spawn(deadline::carried(async move {
                loop {
                    let segment = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if segment >= segments || !store.scan_segment(segment, segments, &tx).await {
                        return;
                    }
                }
            }));
        }
        drop(tx);
        while let Some(rows) = rx.recv().await {
            for (id, d) in rows? {
                apply(&id, d);
            }
        }
        Ok(())
    }

    /// One segment of the digest, page by page into `tx`; false once it failed (the error is
    /// sent) or nobody listens any more.
    async fn scan_segment(
        &self,
        segment: i32,
        segments: i32,
        tx: &mpsc::Sender<Result<Vec<(String, Digest)>, StoreError>>,
    ) -> bool {
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .index_name(SYNC_INDEX)
                .segment(segment)
                .total_segments(segments)
                .limit(PAGE_ITEMS)
                .set_exclusive_start_key(start.take())
                .send()
                .within_deadline()
                .await
                .map_err(StoreError::from)
                .and_then(|r| r.map_err(sdk_error));
            let out = match page {
                Ok(out) => out,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return false;
                }
            };
            let items = out.items.unwrap_or_default();
            let rows = items.iter().filter_map(digest_of).collect();
            drop(items);
            if tx.send(Ok(rows)).await.is_err() {
                return false;
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return true,
            }
        }
    }
}

/// Users per scan segment. DynamoDB Local answers a page more slowly the further into its segment
/// it starts (measured with 1 000-item pages: 100 000 users took 25 s in one segment, 6.5 s in 4,
/// 3.1 s in 16), so a segment count that grows with the realm keeps the time per user flat;
/// DynamoDB bills a scan by the bytes read, not by segments, and allows up to a million of them.
const SEGMENT_ITEMS: u64 = 5_000;
/// Segments scanned at once: the read's parallelism, and the bound on waiting pages.
const SCANS_IN_FLIGHT: usize = 4;

/// The segments of a digest scan for about `users` stored users: at least `SCANS_IN_FLIGHT`, one
/// per `SEGMENT_ITEMS` users, at most DynamoDB's limit.
pub fn digest_segments(users: u64) -> i32 {
    users
        .div_ceil(SEGMENT_ITEMS)
        .clamp(SCANS_IN_FLIGHT as u64, 1_000_000) as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outside::store::table::s;

    fn item(pairs: &[(&str, &str)]) -> Item {
        pairs.iter().map(|(k, v)| (k.to_string(), s(*v))).collect()
    }

    #[test]
    fn a_digest_scan_has_a_segment_per_five_thousand_users_and_at_least_four() {
        assert_eq!(digest_segments(0), 4);
        assert_eq!(digest_segments(20_000), 4);
        assert_eq!(digest_segments(20_001), 5);
        assert_eq!(digest_segments(1_000_000), 200);
        assert_eq!(digest_segments(u64::MAX), 1_000_000);
    }

    #[test]
    fn an_index_item_becomes_its_id_hash_and_state() {
        let hash = "ab".repeat(32);
        let (id, d) = digest_of(&item(&[
            ("pk", "USER#u-1"),
            ("kc_hash", &hash),
            ("status", "deleted"),
            ("deleted_reason", MISSING_IN_KEYCLOAK),
        ]))
        .unwrap();
        assert_eq!(id, "u-1");
        assert_eq!(d.hash, [0xab; 8]);
        assert_eq!(d.state, StoredState::Missing);
    }

    #[test]
    fn a_malformed_hash_matches_nothing_and_other_items_are_ignored() {
        let (_, d) = digest_of(&item(&[("pk", "USER#u"), ("kc_hash", "zz")])).unwrap();
        assert_eq!(d.hash, [0; 8]);
        assert!(digest_of(&item(&[("pk", "SYNC")])).is_none());
    }
}
