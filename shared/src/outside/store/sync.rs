//! Bulk-sync bookkeeping: a lease so one run goes at a time, the sync state (last runs, event
//! cursor), and run records kept for a while (TTL).

use crate::base::clock::EpochSecs;
use crate::base::deadline::Bounded;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::table::{n, s, sdk_error, written, Store, StoreError};

const SYNC: &str = "SYNC";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_full_run_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<i64>,
    /// Epoch ms up to which Keycloak events have been applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_cursor_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_id: Option<String>,
    /// Active local users after the last complete full run: what the deactivation guard's share
    /// is of, for incremental runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_users: Option<u64>,
}

/// What a run reconciles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Every Keycloak user against every local record.
    Full,
    /// The users Keycloak's events name since the cursor.
    Incremental,
}

/// How a run ended (or that it is still going).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    Running,
    /// Another run held the lease.
    Skipped,
    Succeeded,
    /// A full run whose crawl missed pages: it deactivated nobody.
    Incomplete,
    /// Some writes failed or were not done; they are retried by the next run.
    Partial,
    Failed,
    /// Out of time: a follow-up invocation goes on.
    Continued,
    /// More deactivations than `SYNC_MAX_DEACTIVATIONS`: none applied, the plan waits for
    /// `POST /admin/sync {"force": true}`.
    NeedsApproval,
    DryRun,
}

impl SyncStatus {
    /// Whether the run has ended.
    pub fn is_finished(self) -> bool {
        !matches!(self, SyncStatus::Running)
    }
}

/// What a run did, by kind. Every field is a count of users unless it says otherwise. Stored,
/// shown by the API and emitted as metrics under the same camelCase names.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SyncCounts {
    /// Keycloak users the run looked at.
    pub seen: u64,
    pub created: u64,
    pub updated: u64,
    /// Same content as stored: not written.
    pub unchanged: u64,
    pub deactivated: u64,
    /// Users the sync had marked missing that Keycloak has again.
    pub reactivated: u64,
    pub failed: u64,
    /// A newer observation (a login, an admin change) was stored meanwhile.
    pub skipped_newer: u64,
    /// Deleted here by an admin: left alone.
    pub skipped_deleted: u64,
    /// Missed by paging and found by id.
    pub missed_by_paging: u64,
    pub only_in_keycloak: u64,
    pub only_local: u64,
    /// Keycloak events read (incremental).
    pub events: u64,
    /// Admin events of this project's own writes, already applied: skipped without a re-read.
    pub echoes: u64,
    /// Users who looked gone or disabled but were not confirmed so: left as they were, and
    /// their events read again by the next run.
    pub unconfirmed: u64,
    /// Users this run had to write or deactivate (created, updated, reactivated, deactivated):
    /// with webhooks delivering, each is a change no delivery had applied before the run.
    pub drift: u64,
    /// Keycloak users and sessions removed by repairs.
    pub repaired: u64,
    pub repairs_open: u64,
    /// Milliseconds the run took.
    pub duration_ms: u64,
}

impl SyncCounts {
    /// Users written into the store.
    pub fn written(&self) -> u64 {
        self.created + self.updated + self.reactivated
    }
}

/// Another part of the same run's counts (a round of writes counted in a task of its own) added
/// in: every field, so a counter added to the struct cannot be left out here.
impl std::ops::AddAssign for SyncCounts {
    fn add_assign(&mut self, other: SyncCounts) {
        let SyncCounts {
            seen,
            created,
            updated,
            unchanged,
            deactivated,
            reactivated,
            failed,
            skipped_newer,
            skipped_deleted,
            missed_by_paging,
            only_in_keycloak,
            only_local,
            events,
            echoes,
            unconfirmed,
            drift,
            repaired,
            repairs_open,
            duration_ms,
        } = other;
        self.seen += seen;
        self.created += created;
        self.updated += updated;
        self.unchanged += unchanged;
        self.deactivated += deactivated;
        self.reactivated += reactivated;
        self.failed += failed;
        self.skipped_newer += skipped_newer;
        self.skipped_deleted += skipped_deleted;
        self.missed_by_paging += missed_by_paging;
        self.only_in_keycloak += only_in_keycloak;
        self.only_local += only_local;
        self.events += events;
        self.echoes += echoes;
        self.unconfirmed += unconfirmed;
        self.drift += drift;
        self.repaired += repaired;
        self.repairs_open += repairs_open;
        self.duration_ms += duration_ms;
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncRun {
    /// `<start ms>-<random>`: sortable, and names the record directly.
    pub run_id: String,
    /// The mode asked for.
    pub mode: SyncMode,
    /// An incremental run that found a gap in the events and reconciled fully instead.
    #[serde(default)]
    pub escalated: bool,
    pub status: SyncStatus,
    pub started_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    #[serde(default)]
    pub counts: SyncCounts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Value>,
    #[serde(default)]
    pub errors: Vec<String>,
    /// What the run cost: DynamoDB capacity as DynamoDB reported it, and Keycloak requests.
    #[serde(default)]
    pub cost: RunCost,
    /// Keycloak's clock minus ours (ms) as measured at the run's start, if it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keycloak_clock_skew_ms: Option<i64>,
    /// Epoch seconds (TTL).
    pub expires_at: EpochSecs,
}

/// The resources one run used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RunCost {
    pub read_capacity_units: f64,
    pub write_capacity_units: f64,
    pub keycloak_requests: u64,
}

impl SyncRun {
    pub fn new_id(started_at: i64) -> String {
        format!("{started_at:013}-{:08x}", fastrand::u32(..))
    }

    /// Whether the run reconciled every user (asked for, or escalated to).
    pub fn was_full(&self) -> bool {
        self.mode == SyncMode::Full || self.escalated
    }

    /// Whether `id` can name a run at all (`<13 digits>-<8 hex>`).
    pub fn is_run_id(id: &str) -> bool {
        id.split_once('-').is_some_and(|(ms, r)| {
            ms.len() == 13
                && ms.bytes().all(|b| b.is_ascii_digit())
                && r.len() == 8
                && r.bytes().all(|b| b.is_ascii_hexdigit())
        })
    }
}

fn key(sk: &str) -> HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
    HashMap::from([("pk".into(), s(SYNC)), ("sk".into(), s(sk))])
}

impl Store {
    /// Take the lease for `owner` until `expires_at` (epoch ms), if nobody holds a live one.
    pub async fn acquire_lease(
        &self,
        owner: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(SYNC))
            .item("sk", s("LEASE"))
            .item("owner", s(owner))
            .item("lease_expires_at", n(expires_at))
            .condition_expression(
                "attribute_not_exists(pk) OR lease_expires_at < :now OR #owner = :owner",
            )
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":owner", s(owner))
            .send()
            .within_deadline()
            .await?;
        written(result)
    }

    /// Give the lease back, if `owner` still holds it.
    pub async fn release_lease(&self, owner: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key("LEASE")))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(owner))
            .send()
            .within_deadline()
            .await?;
        written(result).map(|_| ())
    }

    pub async fn sync_state(&self) -> Result<SyncState, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key("STATE")))
            .consistent_read(true)
            .send()
            .within_deadline()
            .await?
            .map_err(sdk_error)?;
        match out.item {
            Some(item) => {
                serde_dynamo::from_item(item).map_err(|e| StoreError::Other(e.to_string()))
            }
            None => Ok(SyncState::default()),
        }
    }

    pub async fn put_sync_state(&self, state: &SyncState) -> Result<(), StoreError> {
        self.put_record(state, key("STATE")).await
    }

    pub async fn put_run(&self, run: &SyncRun) -> Result<(), StoreError> {
        self.put_record(run, key(&format!("RUN#{}", run.run_id)))
            .await
    }

    pub async fn get_run(&self, run_id: &str) -> Result<Option<SyncRun>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(&format!("RUN#{run_id}"))))
            .consistent_read(true)
            .send()
            .within_deadline()
            .await?
            .map_err(sdk_error)?;
        out.item
            .map(|i| serde_dynamo::from_item(i).map_err(|e| StoreError::Other(e.to_string())))
            .transpose()
    }

    /// The most recent runs, newest first.
    pub async fn recent_runs(&self, limit: i32) -> Result<Vec<SyncRun>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :run)")
            .expression_attribute_values(":pk", s(SYNC))
            .expression_attribute_values(":run", s("RUN#"))
            .scan_index_forward(false)
            .limit(limit)
            .send()
            .within_deadline()
            .await?
            .map_err(sdk_error)?;
        out.items
            .unwrap_or_default()
            .into_iter()
            .map(|i| serde_dynamo::from_item(i).map_err(|e| StoreError::Other(e.to_string())))
            .collect()
    }
}
