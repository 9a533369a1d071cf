//! The bulk sync (DESIGN §7): a full reconcile of every Keycloak user into the store, and an
//! incremental one from Keycloak's events. It never loses a user and never deactivates one by
//! mistake: a crawl with any failed page deactivates nobody, every suspect is confirmed one by one,
//! and a mass deactivation waits for approval. Unchanged users are never written.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::clock::now_ms;
use crate::error::Error;
use crate::ids::IdMap;
use crate::keycloak::{EventQuery, KeycloakClient, KeycloakError, UserRepresentation};
use crate::observe::{fields_of, observe_user};
use crate::profile::Attributes;
use crate::services::Services;
use crate::store::{
    ApplyOutcome, Digest, KeycloakFields, RunCost, SessionEnd, Store, StoredState, SyncCounts,
    SyncRun, SyncStatus, User, UserStatus,
};

mod change;
mod memberships;
pub use change::UserChange;
use memberships::{Combination, Memberships};

/// How long a run holds the lease; a crashed run's lease expires and the next run takes over.
pub const LEASE_MS: i64 = 15 * 60 * 1000;
/// Run records are kept this long (TTL).
const RUN_RETENTION_S: i64 = 30 * 24 * 3600;
/// Events are re-read this far back from the cursor, so late-stored events are not missed.
const EVENT_OVERLAP_MS: i64 = 60_000;
/// Concurrent DynamoDB writes of one run.
const WRITE_CONCURRENCY: usize = 16;
/// Changed users a full run collects, across groups of pages, before it writes them.
const CHANGES_PER_ROUND: usize = 4 * WRITE_CONCURRENCY;
/// Role and group members per page (brief representations).
/// Events per page.
const EVENT_PAGE: u32 = 500;

pub use crate::store::SyncMode as Mode;

/// What starts a run: a schedule (`{"mode": "full"}`) or the admin API (`{mode, dryRun, force, runId}`).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncRequest {
    pub mode: Mode,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub run_id: Option<String>,
    /// When to stop writing and hand over to a follow-up invocation (epoch ms); see
    /// `stop_writing_at`.
    #[serde(skip)]
    pub deadline_ms: Option<i64>,
}

/// The hand-over time for an invocation that must be done by `deadline` (epoch ms): a minute
/// before it, or a fifth of the time left if that is shorter, to record the run and hand over.
pub fn stop_writing_at(deadline: i64, now: i64) -> i64 {
    let left = (deadline - now).max(0);
    deadline - (left / 5).min(60_000)
}

fn out_of_time(req: &SyncRequest) -> bool {
    req.deadline_ms.is_some_and(|d| now_ms() > d)
}

/// Run one sync and record it. The run record is written whatever happens.
pub async fn run(services: &Services, req: SyncRequest) -> Result<SyncRun, Error> {
    let started = now_ms();
    let mut run = SyncRun {
        run_id: req
            .run_id
            .clone()
            .unwrap_or_else(|| SyncRun::new_id(started)),
        mode: req.mode,
        escalated: false,
        status: SyncStatus::Running,
        started_at: started,
        finished_at: None,
        counts: SyncCounts::default(),
        plan: None,
        errors: Vec::new(),
        cost: RunCost::default(),
        keycloak_clock_skew_ms: None,
        expires_at: started / 1000 + RUN_RETENTION_S,
    };
    let store = &services.store;
    let (capacity_before, requests_before) = (store.consumed(), services.keycloak.requests_sent());
    if !store
        .acquire_lease(&run.run_id, started + LEASE_MS, started)
        .await?
    {
        run.status = SyncStatus::Skipped;
        run.errors.push("another run holds the lease".into());
        run.finished_at = Some(now_ms());
        store.put_run(&run).await?;
        return Ok(run);
    }
    store.put_run(&run).await?;
    let mut counts = SyncCounts::default();
    // What timed-out registrations and logins left behind is finished first.
    let repaired = crate::repair::run(services).await;
    counts.repaired = repaired.removed;
    counts.repairs_open = repaired.open;
    // Event cursors are in Keycloak's time: its clock is read each run.
    match services.keycloak.clock_skew_ms().await {
        Ok(skew) => run.keycloak_clock_skew_ms = Some(skew),
        Err(e) => run
            .errors
            .push(format!("Keycloak's clock could not be read: {e}")),
    }
    let outcome = match req.mode {
        Mode::Full => full(services, &req, &mut run, &mut counts).await,
        Mode::Incremental => incremental(services, &req, &mut run, &mut counts).await,
    };
    if let Err(e) = &outcome {
        run.status = SyncStatus::Failed;
        run.errors.push(e.to_string());
    }
    let finished = now_ms();
    run.finished_at = Some(finished);
    counts.duration_ms = (finished - started).max(0) as u64;
    counts.drift = counts.written() + counts.deactivated;
    run.counts = counts;
    let capacity = store.consumed() - capacity_before;
    run.cost = RunCost {
        read_capacity_units: capacity.read_units,
        write_capacity_units: capacity.write_units,
        keycloak_requests: services.keycloak.requests_sent() - requests_before,
    };
    // A follow-up that would get no further fails instead of handing over forever.
    if run.status == SyncStatus::Continued && run.counts.written() == 0 {
        run.status = SyncStatus::Failed;
        run.errors
            .push("the time budget is too small to make progress".into());
    }
    let recorded = store.put_run(&run).await;
    if let Err(e) = store.release_lease(&run.run_id).await {
        tracing::warn!(error = %e, "could not release the sync lease; it expires by itself");
    }
    // Only once the lease is free: the follow-up takes it.
    if run.status == SyncStatus::Continued {
        continue_in_new_invocation(services, &req).await;
    }
    emit_metrics(&run);
    tracing::info!(run_id = %run.run_id, mode = ?run.mode, status = ?run.status, counts = ?run.counts, "sync run finished");
    recorded?;
    outcome.map(|_| run)
}

/// Hand the rest of a full run to a new invocation of this function. Writes are conditional and
/// hash-based, so the follow-up skips everything already written and goes on from there.
async fn continue_in_new_invocation(services: &Services, req: &SyncRequest) {
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME")
        .unwrap_or_else(|_| services.config.sync_function_name.clone());
    let payload = json!({"mode": "full", "force": req.force});
    let sent = services
        .lambda
        .invoke()
        .function_name(function)
        .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
        .payload(aws_sdk_lambda::primitives::Blob::new(payload.to_string()))
        .send()
        .await;
    if let Err(e) = sent {
        tracing::error!(error = %aws_sdk_lambda::error::DisplayErrorContext(&e),
            "could not start the follow-up run; the next scheduled run picks up from here");
    }
}

/// Out of time: nobody is deactivated in a run that did not finish; the follow-up goes on.
fn hand_over(run: &mut SyncRun) {
    run.status = SyncStatus::Continued;
    run.errors
        .push("time budget reached: continuing in a follow-up invocation".into());
}

/// One Keycloak user as the sync sees it: identity, business attributes, when it was read.
struct Observed {
    rep: UserRepresentation,
    at: i64,
}

/// Every user, page by page: `concurrency` pages in flight, handed out a group of pages at a time
/// until a short page, so that no more than a group is ever held. A page that fails after the
/// client's retries makes the crawl incomplete.
struct Crawl {
    kc: Arc<KeycloakClient>,
    page: u32,
    concurrency: usize,
    first: u32,
    /// How many users Keycloak counted when the crawl began (0 if it could not say).
    counted: u64,
    complete: bool,
    done: bool,
}

impl Crawl {
    async fn start(kc: &Arc<KeycloakClient>, page: u32, concurrency: usize) -> Self {
        let counted = kc.count_users().await.unwrap_or(0);
        Crawl {
            kc: Arc::clone(kc),
            page,
            concurrency,
            first: 0,
            counted,
            complete: true,
            done: false,
        }
    }

    /// The next group of users, or `None` when the crawl is over.
    async fn next(&mut self, errors: &mut Vec<String>) -> Option<Vec<Observed>> {
        if self.done {
            return None;
        }
        // A server that never answers a short page must not keep us paging forever.
        let ceiling = match self.counted {
            0 => u64::MAX,
            c => c.saturating_add(10 * u64::from(self.page)),
        };
        if u64::from(self.first) > ceiling {
            errors.push(format!(
                "crawl stopped at offset {}: more pages than users",
                self.first
            ));
            (self.complete, self.done) = (false, true);
            return None;
        }
        let mut set = JoinSet::new();
        for i in 0..self.concurrency as u32 {
            let kc = Arc::clone(&self.kc);
            let (offset, page) = (self.first + i * self.page, self.page);
            // Stamped when asked: Keycloak's answer is at least this new, and a login that
            // lands while the page is in flight must not lose to it.
            set.spawn(async move {
                let asked = now_ms();
                (offset, kc.list_users(offset, page, false).await, asked)
            });
        }
        let mut results = Vec::new();
        while let Some(joined) = set.join_next().await {
            results.extend(page_read(joined, &mut self.complete, errors));
        }
        results.sort_by_key(|(offset, _, _)| *offset);
        let mut users = Vec::new();
        let mut short = false;
        let mut any_ok = false;
        for (offset, result, at) in results {
            match result {
                Ok(list) => {
                    any_ok = true;
                    short |= (list.len() as u32) < self.page;
                    users.extend(list.into_iter().map(|rep| Observed { rep, at }));
                }
                Err(e) => {
                    self.complete = false;
                    errors.push(format!("page at {offset}: {e}"));
                }
            }
        }
        if short || !any_ok {
            self.done = true;
            self.complete &= any_ok;
        }
        self.first += self.concurrency as u32 * self.page;
        Some(users)
    }
}

/// One crawl page as its task read it: offset, users, when.
type PageRead = (u32, Result<Vec<UserRepresentation>, KeycloakError>, i64);

/// A page task's result. A task that panicked or was cancelled is a page nobody read: the crawl
/// is incomplete, so it deactivates nobody.
fn page_read(
    joined: Result<PageRead, tokio::task::JoinError>,
    complete: &mut bool,
    errors: &mut Vec<String>,
) -> Option<PageRead> {
    match joined {
        Ok(page) => Some(page),
        Err(e) => {
            *complete = false;
            errors.push(format!("a page task failed: {e}"));
            None
        }
    }
}

/// Every item of a listing read `size` at a time, until a short page.
async fn all_pages<T, F, Fut>(size: u32, mut page: F) -> Result<Vec<T>, KeycloakError>
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, KeycloakError>>,
{
    let mut all = Vec::new();
    let mut first = 0;
    loop {
        let items = page(first).await?;
        let short = (items.len() as u32) < size;
        all.extend(items);
        if short {
            return Ok(all);
        }
        first += size;
    }
}

/// What `apply_changes` left undone: whether it got through the list in time, and the users it
/// did not apply (failed, or never started before the time budget ran out).
struct Applied {
    finished: bool,
    not_applied: Vec<String>,
}

/// Write changed users, `WRITE_CONCURRENCY` at a time, each only if its observation is newer.
async fn apply_changes(
    store: &Store,
    changes: Vec<(String, KeycloakFields, Attributes, i64)>,
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
            let handle = set.spawn(async move {
                store
                    .apply_keycloak_fields(&task_id, &fields, &business, at, now_ms())
                    .await
            });
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

enum Deactivation {
    Deleted,
    Disabled(Box<(KeycloakFields, Attributes)>),
}

/// Apply confirmed deactivations: the record marked missing (deleted in Keycloak) or disabled,
/// and the user's sessions ended. Answers the users it could not deactivate.
async fn deactivate(
    store: &Store,
    deactivations: Vec<(String, String, Deactivation)>,
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
fn deactivation_plan(deactivations: &[(String, String, Deactivation)]) -> Vec<Value> {
    deactivations
        .iter()
        .map(|(id, username, d)| json!({"id": id, "username": username, "action": match d { Deactivation::Deleted => "delete", Deactivation::Disabled(..) => "disable" }}))
        .collect()
}

/// What a full run knows of one user: the store's digest (if the store has the user), whether
/// the crawl has seen them, and their membership combination. 14 bytes, none of them aligned;
/// with its 16-byte key, 30 bytes per user in the map's sorted vector.
#[derive(Clone, Copy, Default)]
struct Known {
    stored: Option<Digest>,
    seen: bool,
    combination: Combination,
}

/// A full run: the store's digest and every user's memberships are read first, then Keycloak's
/// users a group of pages at a time, each group diffed and its new users created before the next
/// is read, changed users written once `CHANGES_PER_ROUND` have gathered, so memory holds one
/// group of users, at most that many changes, and a few dozen bytes per user (README "Bulk
/// sync"). Changes still gathered when the time budget runs out are left to the follow-up.
async fn full(
    services: &Services,
    req: &SyncRequest,
    run: &mut SyncRun,
    counts: &mut SyncCounts,
) -> Result<(), Error> {
    let cfg = &services.config;
    let names = &cfg.user_attributes;
    let store = &services.store;
    let kc = &services.keycloak;
    let mut crawl = Crawl::start(kc, cfg.sync_page_size, cfg.sync_concurrency).await;
    // One map for everything held per user, its vector sized once from Keycloak's count.
    let mut known: IdMap<Known> = IdMap::with_capacity(crawl.counted as usize);
    let members = Memberships::read(kc, &mut known, |k| &mut k.combination).await?;
    store
        .scan_digest(crawl.counted, &mut known, |k, d| k.stored = Some(d))
        .await?;
    let active = known
        .values()
        .filter(|k| k.stored.is_some_and(|d| d.state == StoredState::Active))
        .count() as u64;
    let (mut to_create, mut to_update) = (0usize, 0usize);
    // Changed users wait across groups until a round of writes is worth it: a group holds a few
    // changes when few users changed, and writing each group's few alone made every group wait
    // for one write's latency (a 1 %-changed resync took twice its no-change time).
    let mut changes = Vec::new();
    while let Some(group) = crawl.next(&mut run.errors).await {
        let mut new_users = Vec::new();
        // Keycloak's listing leaves service accounts out (contract §4.3, §14).
        for o in group {
            let k = known.entry(&o.rep.id);
            if k.seen {
                continue; // offset drift can show a user twice
            }
            k.seen = true;
            let (stored, combination) = (k.stored, k.combination);
            counts.seen += 1;
            let (fields, business) = fields_of(&o.rep, Some(&members.of(combination)), names);
            match stored {
                None => new_users.push(User::new(&o.rep.id, &fields, &business, o.at)),
                Some(d) if d.state == StoredState::DeletedByAdmin => counts.skipped_deleted += 1,
                Some(d) if d.state != StoredState::Missing && d.hash == fields.content_key() => {
                    counts.unchanged += 1
                }
                Some(_) => changes.push((o.rep.id, fields, business, o.at)),
            }
        }
        counts.only_in_keycloak += new_users.len() as u64;
        if req.dry_run {
            (to_create, to_update) = (to_create + new_users.len(), to_update + changes.len());
            changes.clear();
            continue;
        }
        if out_of_time(req) {
            hand_over(run);
            return Ok(());
        }
        let tried = new_users.len() as u64;
        // A user the digest did not have but the store does (written since the index was read)
        // is written the careful way.
        let refused = store.create_users_if_absent(new_users).await?;
        counts.created += tried - refused.len() as u64;
        changes.extend(refused.into_iter().map(|u| {
            let fields = u.keycloak_fields();
            (u.id, fields, u.attributes, u.kc_observed_at)
        }));
        if changes.len() >= CHANGES_PER_ROUND
            && !apply_changes(
                store,
                std::mem::take(&mut changes),
                counts,
                &mut run.errors,
                req,
            )
            .await
            .finished
        {
            hand_over(run);
            return Ok(());
        }
    }
    if !apply_changes(store, changes, counts, &mut run.errors, req)
        .await
        .finished
    {
        hand_over(run);
        return Ok(());
    }
    let complete = crawl.complete;
    // Suspects: active local users the crawl did not see. Only a complete crawl may accuse anyone,
    // and each suspect is asked about by id: paging can miss a user when others come and go.
    let mut deactivations: Vec<(String, String, Deactivation)> = Vec::new();
    let mut missed = Vec::new();
    if complete {
        let suspects = known.ids_where(|k| {
            !k.seen
                && k.stored
                    .is_some_and(|d| matches!(d.state, StoredState::Active | StoredState::Pending))
        });
        let combination_of = |id: &str| {
            known
                .get(id)
                .map_or_else(Combination::default, |k| k.combination)
        };
        for id in suspects {
            match kc.get_user(&id).await {
                Err(KeycloakError::NotFound) => {
                    let username = store.get_user(&id).await?.map(|u| u.username);
                    deactivations.push((id, username.unwrap_or_default(), Deactivation::Deleted))
                }
                Ok(rep) if !rep.enabled => {
                    let (f, b) = fields_of(&rep, Some(&members.of(combination_of(&rep.id))), names);
                    deactivations.push((
                        id,
                        rep.username,
                        Deactivation::Disabled(Box::new((f, b))),
                    ));
                }
                Ok(rep) => {
                    counts.missed_by_paging += 1;
                    let (f, b) = fields_of(&rep, Some(&members.of(combination_of(&rep.id))), names);
                    missed.push((rep.id, f, b, now_ms()));
                }
                Err(e) => {
                    counts.failed += 1;
                    run.errors.push(format!("confirming {id}: {e}"));
                }
            }
        }
    } else {
        run.errors
            .push("crawl incomplete: no user deactivated in this run".into());
    }
    drop(known);
    counts.only_local += deactivations
        .iter()
        .filter(|d| matches!(d.2, Deactivation::Deleted))
        .count() as u64;
    let guard_ok = cfg
        .sync_max_deactivations
        .allows(deactivations.len() as u64, active.max(1));
    let plan = deactivation_plan(&deactivations);
    if req.dry_run {
        to_update += missed.len();
        run.plan = Some(json!({"create": to_create, "update": to_update, "deactivate": plan}));
        run.status = SyncStatus::DryRun;
        return Ok(());
    }
    let now = now_ms();
    if !apply_changes(store, missed, counts, &mut run.errors, req)
        .await
        .finished
    {
        hand_over(run);
        return Ok(());
    }
    if !deactivations.is_empty() && !guard_ok && !req.force {
        run.plan = Some(json!({"deactivate": plan}));
        run.status = SyncStatus::NeedsApproval;
        run.errors.push(format!(
            "{} deactivations exceed SYNC_MAX_DEACTIVATIONS; none applied. POST /admin/sync {{\"mode\":\"full\",\"force\":true}} applies them",
            deactivations.len()
        ));
    } else {
        deactivate(store, deactivations, counts, &mut run.errors, now).await?;
        // A write that failed (or a suspect Keycloak could not be asked about) is not done: the
        // run says so and moves neither the cursor nor the last success.
        run.status = if !complete {
            SyncStatus::Incomplete
        } else if counts.failed > 0 {
            SyncStatus::Partial
        } else {
            SyncStatus::Succeeded
        };
    }
    let mut state = store.sync_state().await?;
    state.last_full_run_at = Some(run.started_at);
    state.last_run_id = Some(run.run_id.clone());
    if run.status == SyncStatus::Succeeded {
        state.last_success_at = Some(now_ms());
        // The run's start as Keycloak's clock gave it: the events after it are the changes the
        // crawl may have missed. Without a reading of that clock the cursor stays where it was.
        if let Some(skew) = run.keycloak_clock_skew_ms {
            state.event_cursor_ms = Some(run.started_at + skew);
        }
        state.active_users = Some(active);
    }
    store.put_sync_state(&state).await?;
    Ok(())
}

/// Why the events cannot be trusted to cover everything since the cursor, if they cannot.
async fn event_gap(
    kc: &KeycloakClient,
    cursor: Option<i64>,
    keycloak_now: i64,
) -> Result<Option<String>, KeycloakError> {
    let Some(cursor) = cursor else {
        return Ok(Some("no event cursor yet".into()));
    };
    let config = kc.events_config().await?;
    if config.get("adminEventsEnabled").and_then(Value::as_bool) != Some(true) {
        return Ok(Some("admin events are not stored".into()));
    }
    if let Some(expiration) = config
        .get("eventsExpiration")
        .and_then(Value::as_i64)
        .filter(|e| *e > 0)
    {
        if cursor < keycloak_now - expiration * 1000 {
            return Ok(Some("the cursor is older than the event retention".into()));
        }
    }
    Ok(None)
}

async fn incremental(
    services: &Services,
    req: &SyncRequest,
    run: &mut SyncRun,
    counts: &mut SyncCounts,
) -> Result<(), Error> {
    let store = &services.store;
    let kc = &services.keycloak;
    let mut state = store.sync_state().await?;
    let keycloak_now = now_ms() + run.keycloak_clock_skew_ms.unwrap_or_default();
    if let Some(gap) = event_gap(kc, state.event_cursor_ms, keycloak_now).await? {
        // A gap: only a full reconcile can be trusted. It runs under this run's lease.
        run.errors
            .push(format!("event gap ({gap}): running a full reconcile"));
        run.escalated = true;
        return full(services, req, run, counts).await;
    }
    let cursor = state.event_cursor_ms.unwrap_or_default();
    let from = cursor - EVENT_OVERLAP_MS;
    // This project's own writes come back as admin events authored by its service account.
    let own = kc.service_account_id().await.ok();
    let mut named: BTreeMap<String, Named> = BTreeMap::new();
    let mut newest = cursor;
    let mut seen_events = HashSet::new();
    let query = |first: u32, types: Vec<String>| EventQuery {
        date_from_ms: Some(from),
        types,
        first,
        max: EVENT_PAGE,
        ascending: true,
        ..Default::default()
    };
    let admin_types: Vec<String> = ["USER", "REALM_ROLE_MAPPING", "GROUP_MEMBERSHIP"]
        .map(String::from)
        .to_vec();
    for e in all_pages(EVENT_PAGE, |first| {
        let q = query(first, admin_types.clone());
        async move { kc.admin_events(&q).await }
    })
    .await?
    {
        let key =
            e.id.clone()
                .unwrap_or_else(|| format!("{}|{}|{}", e.time, e.resource_path, e.operation_type));
        if !seen_events.insert(key) {
            continue;
        }
        newest = newest.max(e.time);
        if let Some(id) = e.user_id() {
            named
                .entry(id.to_owned())
                .or_insert_with(|| Named::new(e.time))
                .admin_event(&e, own.as_deref());
        }
    }
    let user_types: Vec<String> = [
        "REGISTER",
        "UPDATE_PROFILE",
        "UPDATE_EMAIL",
        "DELETE_ACCOUNT",
        "VERIFY_EMAIL",
    ]
    .map(String::from)
    .to_vec();
    for e in all_pages(EVENT_PAGE, |first| {
        let q = query(first, user_types.clone());
        async move { kc.user_events(&q).await }
    })
    .await?
    {
        let key =
            e.id.clone()
                .unwrap_or_else(|| format!("{}|{}|{:?}", e.time, e.kind, e.user_id));
        if !seen_events.insert(key) {
            continue;
        }
        newest = newest.max(e.time);
        if let Some(id) = e.user_id {
            named
                .entry(id)
                .or_insert_with(|| Named::new(e.time))
                .needs_read(e.time);
        }
    }
    counts.events += seen_events.len() as u64;
    counts.seen += named.len() as u64;
    let names = &services.config.user_attributes;
    let mut changes = Vec::new();
    let mut deactivations = Vec::new();
    // Users whose events must be read again by the next run: the cursor stays before them.
    let mut held: Vec<String> = Vec::new();
    for (id, n) in &named {
        let stored = match store.get_user(id).await {
            Ok(stored) => stored,
            Err(e) => {
                counts.failed += 1;
                run.errors.push(format!("user {id}: {e}"));
                held.push(id.clone());
                continue;
            }
        };
        if n.is_echo_of(stored.as_ref(), names) {
            counts.echoes += n.echoes;
            continue;
        }
        match judge(services, id, stored.as_ref()).await {
            Verdict::Apply(fields, business, at) => {
                changes.push((id.clone(), fields, business, at))
            }
            Verdict::Deactivate(d) => {
                let username = stored.map(|u| u.username).unwrap_or_default();
                deactivations.push((id.clone(), username, d));
            }
            Verdict::Nothing => {}
            Verdict::Unresolved(why) => {
                counts.unconfirmed += 1;
                run.errors.push(why);
                held.push(id.clone());
            }
        }
    }
    if req.dry_run {
        run.plan =
            Some(json!({"update": changes.len(), "deactivate": deactivation_plan(&deactivations)}));
        run.status = SyncStatus::DryRun;
        return Ok(());
    }
    let applied = apply_changes(store, changes, counts, &mut run.errors, req).await;
    held.extend(applied.not_applied);
    let guard_ok = services.config.sync_max_deactivations.allows(
        deactivations.len() as u64,
        state.active_users.unwrap_or(0).max(1),
    );
    let waiting = !deactivations.is_empty() && !guard_ok && !req.force;
    if waiting {
        run.plan = Some(json!({"deactivate": deactivation_plan(&deactivations)}));
        run.errors.push(format!(
            "{} deactivations exceed SYNC_MAX_DEACTIVATIONS; none applied. POST /admin/sync {{\"mode\":\"incremental\",\"force\":true}} applies them",
            deactivations.len()
        ));
        held.extend(deactivations.into_iter().map(|(id, ..)| id));
    } else {
        held.extend(deactivate(store, deactivations, counts, &mut run.errors, now_ms()).await?);
    }
    // The cursor moves past every event whose user was applied, and no further than the first
    // event of a user who was not.
    state.event_cursor_ms = Some(
        held.iter()
            .filter_map(|id| named.get(id).map(|n| n.first))
            .min()
            .map_or(newest, |first| (first - 1).max(cursor)),
    );
    state.last_run_id = Some(run.run_id.clone());
    store.put_sync_state(&state).await?;
    run.status = if waiting {
        SyncStatus::NeedsApproval
    } else if !held.is_empty() {
        SyncStatus::Partial
    } else {
        SyncStatus::Succeeded
    };
    Ok(())
}

/// A user the events of an incremental run name.
struct Named {
    /// The time of the user's earliest event in this window.
    first: i64,
    /// Some event needs the user read from Keycloak (anything but an echo of our own write).
    read: bool,
    /// Admin events of our own writes to this user, and the representation of the latest.
    echoes: u64,
    latest_echo: Option<(i64, String)>,
}

impl Named {
    fn new(time: i64) -> Self {
        Named {
            first: time,
            read: false,
            echoes: 0,
            latest_echo: None,
        }
    }

    fn needs_read(&mut self, time: i64) {
        self.first = self.first.min(time);
        self.read = true;
    }

    /// An admin event: an echo when this project's service account wrote the user's
    /// representation (create, update); anything else is read from Keycloak.
    fn admin_event(&mut self, e: &crate::keycloak::AdminEvent, own: Option<&str>) {
        let by_us =
            own.is_some() && e.auth_details.as_ref().and_then(|a| a.user_id.as_deref()) == own;
        match &e.representation {
            Some(rep)
                if by_us
                    && e.resource_type == "USER"
                    && matches!(e.operation_type.as_str(), "CREATE" | "UPDATE") =>
            {
                self.first = self.first.min(e.time);
                self.echoes += 1;
                if self.latest_echo.as_ref().is_none_or(|(t, _)| e.time >= *t) {
                    self.latest_echo = Some((e.time, rep.clone()));
                }
            }
            _ => self.needs_read(e.time),
        }
    }

    /// Whether every event is our own write and the store already holds what the latest one
    /// wrote (same content hash, same business attributes): nothing to read or apply.
    fn is_echo_of(&self, stored: Option<&User>, names: &[String]) -> bool {
        let (Some(stored), Some((_, rep)), false) = (stored, &self.latest_echo, self.read) else {
            return false;
        };
        if stored.is_unread() {
            return false;
        }
        let Ok(mut rep) = serde_json::from_str::<Value>(rep) else {
            return false;
        };
        // A root field the write left out (our updates leave out `enabled`) kept its value.
        if let Some(obj) = rep.as_object_mut() {
            for (key, value) in [
                ("id", json!(stored.id)),
                ("username", json!(stored.username)),
                ("email", json!(stored.email)),
                ("firstName", json!(stored.first_name)),
                ("lastName", json!(stored.last_name)),
                ("enabled", json!(stored.enabled)),
                ("emailVerified", json!(stored.email_verified)),
            ] {
                obj.entry(key).or_insert(value);
            }
        }
        let Ok(rep) = serde_json::from_value::<UserRepresentation>(rep) else {
            return false;
        };
        let membership = (
            stored.roles.iter().cloned().collect(),
            stored.groups.clone(),
        );
        let (fields, business) = fields_of(&rep, Some(&membership), names);
        stored.status != UserStatus::Deleted
            && fields.content_hash() == stored.kc_hash
            && business == stored.attributes
    }
}

/// How long an incremental run waits before looking again at a user who seems gone or disabled.
const CONFIRM_DELAY: std::time::Duration = std::time::Duration::from_millis(750);

/// What an incremental run concluded about one user its events name.
enum Verdict {
    Apply(KeycloakFields, Attributes, i64),
    Deactivate(Deactivation),
    Nothing,
    /// Not decided now (Keycloak failed, or a 404 its own search contradicts): the user is left
    /// as they are, and their events are read again by the next run.
    Unresolved(String),
}

/// Read a user the events name. One read never locks anyone out: a user active here who looks
/// deleted or disabled is read again after `CONFIRM_DELAY`, and a second 404 is checked against
/// the user search by id before the user counts as deleted.
async fn judge(services: &Services, id: &str, stored: Option<&User>) -> Verdict {
    let kc = &services.keycloak;
    let names = &services.config.user_attributes;
    // An observation is stamped when the read was asked: an admin edit that finished after
    // that (`finish_edit`) is the newer one, whatever the read returned.
    let observed = |rep: UserRepresentation, deactivating: bool, asked: i64| async move {
        match observe_user(kc, &rep, names).await {
            Ok(fb) if deactivating => Verdict::Deactivate(Deactivation::Disabled(Box::new(fb))),
            Ok((f, b)) => Verdict::Apply(f, b, asked),
            Err(e) => Verdict::Unresolved(format!("reading {}: {e}", rep.id)),
        }
    };
    let active_here =
        stored.is_some_and(|u| matches!(u.status, UserStatus::Active | UserStatus::Pending));
    let asked = now_ms();
    let service_accounts = match kc.service_account_users().await {
        Ok(ids) => ids,
        Err(e) => return Verdict::Unresolved(format!("reading the service accounts: {e}")),
    };
    if service_accounts.contains(id) {
        return Verdict::Nothing;
    }
    match kc.get_user(id).await {
        Ok(rep) if rep.enabled || !active_here => return observed(rep, false, asked).await,
        Ok(_) => {}
        Err(KeycloakError::NotFound) if !active_here => {
            let known = stored.is_some_and(|u| u.status != UserStatus::Deleted);
            return if known {
                Verdict::Deactivate(Deactivation::Deleted)
            } else {
                Verdict::Nothing
            };
        }
        Err(KeycloakError::NotFound) => {}
        Err(e) => return Verdict::Unresolved(format!("reading {id}: {e}")),
    }
    tokio::time::sleep(CONFIRM_DELAY).await;
    let asked = now_ms();
    match kc.get_user(id).await {
        Ok(rep) => {
            let disabled = !rep.enabled;
            observed(rep, disabled, asked).await
        }
        Err(KeycloakError::NotFound) => match kc.found_by_search(id).await {
            Ok(false) => Verdict::Deactivate(Deactivation::Deleted),
            Ok(true) => Verdict::Unresolved(format!(
                "{id}: not found by id, but the user search finds it; left as it is"
            )),
            Err(e) => Verdict::Unresolved(format!("confirming {id}: {e}")),
        },
        Err(e) => Verdict::Unresolved(format!("confirming {id}: {e}")),
    }
}

/// What one webhook-delivered change did.
#[derive(Debug, PartialEq)]
pub enum ChangeOutcome {
    /// An echo of this project's own write that the store already holds: nothing read.
    Echo,
    Applied(ApplyOutcome),
    Deactivated,
    /// Nothing to do: a service account, or a user unknown here and gone from Keycloak.
    Nothing,
}

/// Apply one user a webhook named, the way an incremental run applies a user its events name:
/// the echo check, the user read from Keycloak (never the payload), a deactivation only once
/// confirmed, and the conditional, newest-observation-wins write. A user that cannot be decided
/// now (Keycloak failing, a 404 the search contradicts) is an error: the message is retried.
pub async fn apply_user_change(
    services: &Services,
    change: &UserChange,
) -> Result<ChangeOutcome, Error> {
    let store = &services.store;
    let names = &services.config.user_attributes;
    let id = &change.user_id;
    let mut named = Named::new(change.time);
    match &change.admin {
        Some(e) => {
            let own = services.keycloak.service_account_id().await.ok();
            named.admin_event(e, own.as_deref());
        }
        None => named.needs_read(change.time),
    }
    let stored = store.get_user(id).await?;
    if named.is_echo_of(stored.as_ref(), names) {
        return Ok(ChangeOutcome::Echo);
    }
    match judge(services, id, stored.as_ref()).await {
        Verdict::Apply(fields, business, at) => Ok(ChangeOutcome::Applied(
            store
                .apply_keycloak_fields(id, &fields, &business, at, now_ms())
                .await?,
        )),
        Verdict::Deactivate(d) => {
            let username = stored.map(|u| u.username).unwrap_or_default();
            let (mut counts, mut errors) = (SyncCounts::default(), Vec::new());
            let plan = vec![(id.clone(), username, d)];
            let failed = deactivate(store, plan, &mut counts, &mut errors, now_ms()).await?;
            if failed.is_empty() {
                Ok(ChangeOutcome::Deactivated)
            } else {
                Err(Error::Unavailable {
                    code: "store_unavailable",
                    detail: errors.join("; "),
                })
            }
        }
        Verdict::Nothing => Ok(ChangeOutcome::Nothing),
        Verdict::Unresolved(why) => Err(Error::Unavailable {
            code: "keycloak_unavailable",
            detail: why,
        }),
    }
}

/// One CloudWatch Embedded Metric Format line per run (Lambda sends stdout to CloudWatch Logs,
/// which turns it into metrics). Written by hand rather than with `metrics_cloudwatch_embedded`:
/// a run emits exactly one line whose dimensions (its final status) are known only at the end,
/// so a global metrics recorder and its flush would be more code and another dependency tree.
///
/// Besides the counts, `runs` is 1 for every run: by `Status` alone and by `Mode` and `Status`,
/// it is what template.yaml's alarms watch (a run failed, one needs approval, no full run
/// succeeded for two intervals).
pub fn metrics_line(run: &SyncRun) -> serde_json::Value {
    let mut counts = serde_json::to_value(&run.counts).unwrap_or_default();
    if let (Some(c), Ok(Value::Object(cost))) =
        (counts.as_object_mut(), serde_json::to_value(run.cost))
    {
        c.insert("runs".into(), json!(1));
        c.extend(cost);
    }
    let names: Vec<&String> = counts
        .as_object()
        .map(|c| c.keys().collect())
        .unwrap_or_default();
    let mut line = json!({
        "_aws": {
            "Timestamp": run.finished_at.unwrap_or(run.started_at),
            "CloudWatchMetrics": [{
                "Namespace": "KeycloakUserSync",
                "Dimensions": [["Mode", "Status"], ["Status"]],
                "Metrics": names.iter().map(|n| json!({"Name": n, "Unit": if n.as_str() == "durationMs" { "Milliseconds" } else { "Count" }})).collect::<Vec<_>>(),
            }],
        },
        "Mode": if run.was_full() { "full" } else { "incremental" },
        "Status": run.status,
        "RunId": run.run_id,
    });
    if let (Some(line), Some(counts)) = (line.as_object_mut(), counts.as_object()) {
        line.extend(counts.clone());
        // How far apart the clocks are, either way, without dimensions (declared only when read).
        if let Some(skew) = run.keycloak_clock_skew_ms {
            line.insert("keycloakClockSkewMs".into(), json!(skew.unsigned_abs()));
            if let Some(directives) = line["_aws"]["CloudWatchMetrics"].as_array_mut() {
                directives.push(json!({
                    "Namespace": "KeycloakUserSync",
                    "Dimensions": [[]],
                    "Metrics": [{"Name": "keycloakClockSkewMs", "Unit": "Milliseconds"}],
                }));
            }
        }
    }
    line
}

fn emit_metrics(run: &SyncRun) {
    println!("{}", metrics_line(run));
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::SyncMode;

    #[test]
    fn a_user_costs_30_bytes_in_the_full_runs_map() {
        // The README's memory per user: the sorted vector's entry, a 16-byte id and its state.
        assert_eq!(std::mem::size_of::<([u8; 16], Known)>(), 30);
    }

    #[tokio::test]
    async fn a_crawl_page_task_that_panics_makes_the_crawl_incomplete() {
        let joined = tokio::spawn(async {
            if true {
                panic!("a page task panicked");
            }
            (0u32, Ok(Vec::new()), 0i64)
        })
        .await;
        let (mut complete, mut errors) = (true, Vec::new());
        assert!(page_read(joined, &mut complete, &mut errors).is_none());
        assert!(!complete);
        assert!(errors[0].contains("page task failed"), "{errors:?}");
    }

    #[test]
    fn the_metrics_line_is_embedded_metric_format() {
        let run = SyncRun {
            run_id: "1".into(),
            mode: SyncMode::Incremental,
            escalated: true,
            status: SyncStatus::Succeeded,
            started_at: 1,
            finished_at: Some(2),
            counts: SyncCounts {
                created: 3,
                duration_ms: 10,
                ..Default::default()
            },
            plan: None,
            errors: Vec::new(),
            cost: RunCost {
                read_capacity_units: 2.5,
                write_capacity_units: 4.0,
                keycloak_requests: 7,
            },
            keycloak_clock_skew_ms: Some(-120_000),
            expires_at: 0,
        };
        let line = metrics_line(&run);
        assert_eq!(
            (line["Mode"].as_str(), line["Status"].as_str()),
            (Some("full"), Some("succeeded"))
        );
        assert_eq!(line["created"], 3);
        let metrics = line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap();
        assert!(metrics.contains(&json!({"Name": "durationMs", "Unit": "Milliseconds"})));
        assert!(metrics.contains(&json!({"Name": "created", "Unit": "Count"})));
        assert_eq!(
            (
                line["writeCapacityUnits"].clone(),
                line["keycloakRequests"].clone()
            ),
            (json!(4.0), json!(7))
        );
        // What the alarms count: one run, by status alone and by mode and status.
        assert!(metrics.contains(&json!({"Name": "runs", "Unit": "Count"})));
        assert_eq!(line["runs"], 1);
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Mode", "Status"], ["Status"]])
        );
        // The clock skew alarm's metric: how far apart, either way, with no dimensions.
        assert_eq!(line["keycloakClockSkewMs"], 120_000);
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][1],
            json!({"Namespace": "KeycloakUserSync", "Dimensions": [[]],
                   "Metrics": [{"Name": "keycloakClockSkewMs", "Unit": "Milliseconds"}]})
        );
    }

    #[test]
    fn a_skew_that_could_not_be_read_declares_no_metric() {
        let run = SyncRun {
            run_id: "1".into(),
            mode: SyncMode::Full,
            escalated: false,
            status: SyncStatus::Succeeded,
            started_at: 1,
            finished_at: Some(2),
            counts: SyncCounts::default(),
            plan: None,
            errors: Vec::new(),
            cost: RunCost::default(),
            keycloak_clock_skew_ms: None,
            expires_at: 0,
        };
        let line = metrics_line(&run);
        assert!(line.get("keycloakClockSkewMs").is_none());
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"].as_array().unwrap().len(),
            1
        );
    }
}
