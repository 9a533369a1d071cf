//! An incremental run: the admin and user events since the cursor name the users to look at;
//! each is judged as a webhook change is (`change`), and the cursor moves past every event whose
//! user was applied. A gap in the events (no cursor, events not stored, the cursor older than
//! their retention) makes it a full run.

use std::collections::{BTreeMap, HashSet};

use serde_json::{json, Value};

use crate::base::clock::now_ms;
use crate::error::Error;
use crate::outside::keycloak::{EventQuery, KeycloakClient, KeycloakError};
use crate::outside::store::{SyncCounts, SyncRun, SyncState, SyncStatus};
use crate::services::Services;

use super::apply::{apply_changes, deactivate, deactivation_plan, Change, Planned};
use super::change::{judge, Named, Verdict};
use super::crawl::all_pages;
use super::full::full;
use super::request::SyncRequest;

/// Events are re-read this far back from the cursor, so late-stored events are not missed.
const EVENT_OVERLAP_MS: i64 = 60_000;
/// Events per page.
const EVENT_PAGE: u32 = 500;

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

pub(super) async fn incremental(
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
    let events = read_events(kc, cursor).await?;
    counts.events += events.count;
    counts.seen += events.named.len() as u64;
    let (changes, deactivations, mut held) = decide(services, run, counts, &events.named).await;
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
    move_cursor(&mut state, &events, cursor, &held);
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

/// The events of a window: the users they name, the newest event's time, how many there were.
struct Events {
    named: BTreeMap<String, Named>,
    newest: i64,
    count: u64,
}

/// The admin and user events from a little before the cursor, each counted once.
async fn read_events(kc: &KeycloakClient, cursor: i64) -> Result<Events, Error> {
    let from = cursor - EVENT_OVERLAP_MS;
    // This project's own writes come back as admin events authored by its service account.
    let own = kc.service_account_id().await.ok();
    let mut named: BTreeMap<String, Named> = BTreeMap::new();
    let mut newest = cursor;
    let mut seen_events = HashSet::new();
    let query = |first: u32, types: &[&str]| EventQuery {
        date_from_ms: Some(from),
        types: types.iter().map(|t| t.to_string()).collect(),
        first,
        max: EVENT_PAGE,
        ascending: true,
        ..Default::default()
    };
    let admin_types = ["USER", "REALM_ROLE_MAPPING", "GROUP_MEMBERSHIP"];
    for e in all_pages(EVENT_PAGE, |first| {
        let q = query(first, &admin_types);
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
    let user_types = [
        "REGISTER",
        "UPDATE_PROFILE",
        "UPDATE_EMAIL",
        "DELETE_ACCOUNT",
        "VERIFY_EMAIL",
    ];
    for e in all_pages(EVENT_PAGE, |first| {
        let q = query(first, &user_types);
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
    let count = seen_events.len() as u64;
    Ok(Events {
        named,
        newest,
        count,
    })
}

/// Each named user judged: the changes to write, the deactivations, and the users whose events
/// must be read again by the next run (the cursor stays before them).
async fn decide(
    services: &Services,
    run: &mut SyncRun,
    counts: &mut SyncCounts,
    named: &BTreeMap<String, Named>,
) -> (Vec<Change>, Vec<Planned>, Vec<String>) {
    let names = &services.config.user_attributes;
    let (mut changes, mut deactivations, mut held) = (Vec::new(), Vec::new(), Vec::new());
    for (id, n) in named {
        let stored = match services.store.get_user(id).await {
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
                let username = stored.map(|u| u.keycloak.username).unwrap_or_default();
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
    (changes, deactivations, held)
}

/// The cursor moves past every event whose user was applied, and no further than the first
/// event of a user who was not.
fn move_cursor(state: &mut SyncState, events: &Events, cursor: i64, held: &[String]) {
    state.event_cursor_ms = Some(
        held.iter()
            .filter_map(|id| events.named.get(id).map(|n| n.first))
            .min()
            .map_or(events.newest, |first| (first - 1).max(cursor)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(named: &[(&str, i64)], newest: i64) -> Events {
        Events {
            named: named
                .iter()
                .map(|(id, first)| (id.to_string(), Named::new(*first)))
                .collect(),
            newest,
            count: named.len() as u64,
        }
    }

    #[test]
    fn with_every_user_applied_the_cursor_moves_to_the_newest_event() {
        let mut state = SyncState::default();
        move_cursor(&mut state, &events(&[("u-1", 1_500)], 2_000), 1_000, &[]);
        assert_eq!(state.event_cursor_ms, Some(2_000));
    }

    #[test]
    fn the_cursor_stops_just_before_the_first_event_of_a_user_not_applied() {
        let mut state = SyncState::default();
        let seen = events(&[("u-1", 1_500), ("u-2", 1_800), ("u-3", 1_900)], 2_000);
        move_cursor(&mut state, &seen, 1_000, &["u-3".into(), "u-2".into()]);
        assert_eq!(state.event_cursor_ms, Some(1_799));
    }

    #[test]
    fn the_cursor_never_moves_back_past_where_the_run_began() {
        let mut state = SyncState::default();
        let seen = events(&[("u-1", 900)], 2_000);
        move_cursor(&mut state, &seen, 1_000, &["u-1".into()]);
        assert_eq!(state.event_cursor_ms, Some(1_000));
    }
}
