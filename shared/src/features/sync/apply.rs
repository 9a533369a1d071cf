//! The run's writes: changed users applied conditionally, several at a time, and confirmed
//! deactivations with the end of the users' sessions.

use std::collections::HashMap;

use serde_json::{json, Value};
use tokio::task::{JoinHandle, JoinSet};

use crate::base::clock::now_ms;
use crate::base::deadline;
use crate::error::Error;
use crate::outside::store::{ApplyOutcome, KeycloakFields, SessionEnd, Store, SyncCounts};
use crate::rules::profile::Attributes;

use super::request::{out_of_time, SyncRequest};

/// Concurrent DynamoDB writes of one run.
pub(super) const WRITE_CONCURRENCY: usize = 16;

/// A changed user to write: id, Keycloak's fields, the business attributes, when observed.
pub(super) type Change = (String, KeycloakFields, Attributes, i64);

/// A confirmed deactivation: id, username (for the plan), what happened in Keycloak.
pub(super) type Planned = (String, String, Deactivation);

/// What `apply_changes` left undone: whether it got through the list in time, and the users it
/// did not apply (failed, or never started before the time budget ran out).
pub(super) struct Applied {
    pub(super) finished: bool,
    pub(super) not_applied: Vec<String>,
}

/// Write changed users, `WRITE_CONCURRENCY` at a time, each only if its observation is newer.
pub(super) async fn apply_changes(
    store: &Store,
    changes: Vec<Change>,
    counts: &mut SyncCounts,
    errors: &mut Vec<String>,
    req: &SyncRequest,
) -> Applied {
    let mut pending = changes.into_iter();
    let mut set = JoinSet::new();
    let mut running: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut applied = Applied {
        finished: true,
        not_applied: Vec::new(),
    };
    loop {
        while set.len() < WRITE_CONCURRENCY && applied.finished {
            if out_of_time(req) {
                applied.finished = false;
                break;
            }
            let Some((id, fields, business, at)) = pending.next() else {
                break;
            };
            let store = store.clone();
            let task_id = id.clone();
            let handle = set.spawn(deadline::carried(async move {
                store
                    .apply_keycloak_fields(&task_id, &fields, &business, at, now_ms())
                    .await
            }));
            running.insert(handle.id(), id);
        }
        let Some(done) = set.join_next_with_id().await else {
            break;
        };
        let (task, result) = match done {
            Ok((task, r)) => (task, r.map_err(|e| e.to_string())),
            Err(e) => (e.id(), Err(format!("the write task failed: {e}"))),
        };
        let id = running.remove(&task).unwrap_or_default();
        match result {
            Ok(outcome) => {
                *match outcome {
                    ApplyOutcome::Created => &mut counts.created,
                    ApplyOutcome::Updated => &mut counts.updated,
                    ApplyOutcome::Reactivated => &mut counts.reactivated,
                    ApplyOutcome::Unchanged => &mut counts.unchanged,
                    ApplyOutcome::Skipped => &mut counts.skipped_newer,
                } += 1;
            }
            Err(e) => {
                counts.failed += 1;
                errors.push(format!("user {id}: {e}"));
                applied.not_applied.push(id);
            }
        }
    }
    applied.not_applied.extend(pending.map(|(id, ..)| id));
    applied
}

/// A round of changed users written in a task of its own while the crawl reads on, so that the
/// writes (which DynamoDB Local applies one at a time, 2.7 ms each) overlap Keycloak's pages
/// instead of following them. One round in flight at a time: the next waits for it, so at most
/// two rounds of changes are held. Its counts and errors join the run's when it is awaited.
#[derive(Default)]
pub(super) struct Writer {
    /// The round in flight: how many users it writes, and its task.
    round: Option<(usize, JoinHandle<Round>)>,
}

/// What a round's task answers: what it got through, its counts, its errors.
type Round = (Applied, SyncCounts, Vec<String>);

impl Writer {
    /// Start writing `changes` once the round before has ended; false (nothing started) if that
    /// one ran out of time.
    pub(super) async fn start(
        &mut self,
        store: &Store,
        changes: Vec<Change>,
        req: &SyncRequest,
        counts: &mut SyncCounts,
        errors: &mut Vec<String>,
    ) -> bool {
        if !self.finish(counts, errors).await {
            return false;
        }
        let (store, req, size) = (store.clone(), req.clone(), changes.len());
        let round = tokio::spawn(deadline::carried(async move {
            let (mut counts, mut errors) = (SyncCounts::default(), Vec::new());
            let applied = apply_changes(&store, changes, &mut counts, &mut errors, &req).await;
            (applied, counts, errors)
        }));
        self.round = Some((size, round));
        true
    }

    /// Wait for the round in flight, if any; false if it ran out of time. A round whose task
    /// failed counts its users as failed.
    pub(super) async fn finish(
        &mut self,
        counts: &mut SyncCounts,
        errors: &mut Vec<String>,
    ) -> bool {
        let Some((size, round)) = self.round.take() else {
            return true;
        };
        match round.await {
            Ok((applied, written, round_errors)) => {
                *counts += written;
                errors.extend(round_errors);
                applied.finished
            }
            Err(e) => {
                counts.failed += size as u64;
                errors.push(format!("a round of {size} writes failed: {e}"));
                true
            }
        }
    }
}

pub(super) enum Deactivation {
    Deleted,
    Disabled(Box<(KeycloakFields, Attributes)>),
}

/// Apply confirmed deactivations: the record marked missing (deleted in Keycloak) or disabled,
/// and the user's sessions ended. Answers the users it could not deactivate.
pub(super) async fn deactivate(
    store: &Store,
    deactivations: Vec<Planned>,
    counts: &mut SyncCounts,
    errors: &mut Vec<String>,
    now: i64,
) -> Result<Vec<String>, Error> {
    let mut failed = Vec::new();
    for (id, _, d) in deactivations {
        let applied = match d {
            Deactivation::Deleted => store.mark_missing(&id, now).await.map(|done| done as u64),
            Deactivation::Disabled(fb) => store
                .apply_keycloak_fields(&id, &fb.0, &fb.1, now, now)
                .await
                .map(|o| matches!(o, ApplyOutcome::Updated) as u64),
        };
        match applied {
            Ok(n) => {
                counts.deactivated += n;
                store
                    .end_all_sessions(&id, SessionEnd::UserDeactivated, now)
                    .await?;
            }
            Err(e) => {
                counts.failed += 1;
                errors.push(format!("deactivating {id}: {e}"));
                failed.push(id);
            }
        }
    }
    Ok(failed)
}

/// The deactivation plan a run shows (dry run, or waiting for approval).
pub(super) fn deactivation_plan(deactivations: &[Planned]) -> Vec<Value> {
    deactivations
        .iter()
        .map(|(id, username, d)| json!({"id": id, "username": username, "action": match d { Deactivation::Deleted => "delete", Deactivation::Disabled(..) => "disable" }}))
        .collect()
}
