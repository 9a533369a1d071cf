//! A full run: the store's digest and every user's memberships are read first (at the same
//! time: the store and Keycloak answer in parallel), then Keycloak's
//! users a group of pages at a time, each group diffed and its new users created before the next
//! is read, changed users written once `CHANGES_PER_ROUND` have gathered (a round at a time, in
//! a task of its own while the next groups are read), so memory holds one group of users, at most
//! two rounds of changes, and a few dozen bytes per user (README "Bulk sync"). Changes still
//! gathered when the time budget runs out are left to the follow-up. Then the users the crawl did
//! not see are asked about one by one, and only those confirmed gone or disabled are deactivated.

use std::cell::RefCell;
use std::time::Instant;

use serde_json::json;

use crate::base::clock::now_ms;
use crate::base::ids::IdMap;
use crate::error::Error;
use crate::features::observe::fields_of;
use crate::outside::keycloak::KeycloakError;
use crate::outside::store::{Digest, StoredState, SyncCounts, SyncRun, SyncStatus, User};
use crate::services::Services;

use super::apply::{
    apply_changes, deactivate, deactivation_plan, Change, Deactivation, Planned, Writer,
    WRITE_CONCURRENCY,
};
use super::crawl::Crawl;
use super::memberships::{Combination, Memberships};
use super::request::{hand_over, out_of_time, SyncRequest};

/// Changed users a full run collects, across groups of pages, before it writes them.
const CHANGES_PER_ROUND: usize = 4 * WRITE_CONCURRENCY;

/// What a full run knows of one user: the store's digest (if the store has the user), whether
/// the crawl has seen them, and their membership combination. 14 bytes, none of them aligned;
/// with its 16-byte key, 30 bytes per user in the map's sorted vector.
#[derive(Clone, Copy, Default)]
struct Known {
    stored: Option<Digest>,
    seen: bool,
    combination: Combination,
}

/// What the crawl leaves to the end of a run: the users Keycloak has that the store lacks and
/// those it has changed (counted for a dry run's plan), and, once every page was read, the
/// confirmed deactivations and the users paging missed.
#[derive(Default)]
struct Crawled {
    active: u64,
    to_create: usize,
    to_update: usize,
    complete: bool,
    deactivations: Vec<Planned>,
    missed: Vec<Change>,
}

pub(super) async fn full(
    services: &Services,
    req: &SyncRequest,
    run: &mut SyncRun,
    counts: &mut SyncCounts,
) -> Result<(), Error> {
    let cfg = &services.config;
    let kc = &services.keycloak;
    let mut crawl = Crawl::start(kc, cfg.sync_page_size, cfg.sync_concurrency).await;
    // One map for everything held per user, its vector sized once from Keycloak's count, filled
    // by both reads at once (each applies a page between its awaits; both run on this task).
    let known: RefCell<IdMap<Known>> = RefCell::new(IdMap::with_capacity(crawl.counted as usize));
    let started = Instant::now();
    let memberships = async {
        let read = Memberships::read(kc, crawl.counted, &known, |k| &mut k.combination).await;
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            "memberships read"
        );
        read.map_err(Error::from)
    };
    let digest = async {
        let read = services
            .store
            .scan_digest(crawl.counted, |id, d| {
                known.borrow_mut().entry(id).stored = Some(d)
            })
            .await;
        tracing::info!(ms = started.elapsed().as_millis() as u64, "digest read");
        read.map_err(Error::from)
    };
    let (members, ()) = tokio::try_join!(memberships, digest)?;
    let mut known = known.into_inner();
    let active = known
        .values()
        .filter(|k| k.stored.is_some_and(|d| d.state == StoredState::Active))
        .count() as u64;
    let crawled =
        crawl_and_write(services, req, run, counts, &mut crawl, &mut known, &members).await?;
    tracing::info!(
        ms = started.elapsed().as_millis() as u64,
        "users crawled and written"
    );
    let Some((to_create, to_update)) = crawled else {
        hand_over(run);
        return Ok(());
    };
    let mut crawled = Crawled {
        active,
        to_create,
        to_update,
        complete: crawl.complete,
        ..Default::default()
    };
    if crawled.complete {
        confirm_suspects(services, run, counts, &known, &members, &mut crawled).await?;
    } else {
        run.errors
            .push("crawl incomplete: no user deactivated in this run".into());
    }
    drop(known);
    settle(services, req, run, counts, crawled).await
}

/// Every group of Keycloak's users diffed against the digest: new users created, changed ones
/// written a round at a time. Answers what a dry run would create and update, or `None` when the
/// time budget ran out (the run hands over).
async fn crawl_and_write(
    services: &Services,
    req: &SyncRequest,
    run: &mut SyncRun,
    counts: &mut SyncCounts,
    crawl: &mut Crawl,
    known: &mut IdMap<Known>,
    members: &Memberships,
) -> Result<Option<(usize, usize)>, Error> {
    let (names, store) = (&services.config.user_attributes, &services.store);
    let (mut to_create, mut to_update) = (0usize, 0usize);
    // Changed users wait across groups until a round of writes is worth it: a group holds a few
    // changes when few users changed, and writing each group's few alone made every group wait
    // for one write's latency (a 1 %-changed resync took twice its no-change time).
    let mut changes = Vec::new();
    // Each round is written while the next groups are read; every way out of the loop awaits it.
    let mut writer = Writer::default();
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
            writer.finish(counts, &mut run.errors).await;
            return Ok(None);
        }
        let tried = new_users.len() as u64;
        // A user the digest did not have but the store does (written since the index was read)
        // is written the careful way.
        let refused = match store.create_users_if_absent(new_users).await {
            Ok(refused) => refused,
            Err(e) => {
                writer.finish(counts, &mut run.errors).await;
                return Err(e.into());
            }
        };
        counts.created += tried - refused.len() as u64;
        changes.extend(refused.into_iter().map(|u| {
            let fields = u.keycloak.clone();
            (u.id, fields, u.attributes, u.kc_observed_at)
        }));
        if changes.len() >= CHANGES_PER_ROUND {
            let round = std::mem::take(&mut changes);
            if !writer
                .start(store, round, req, counts, &mut run.errors)
                .await
            {
                return Ok(None);
            }
        }
    }
    if !writer.finish(counts, &mut run.errors).await {
        return Ok(None);
    }
    let finished = apply_changes(store, changes, counts, &mut run.errors, req)
        .await
        .finished;
    Ok(finished.then_some((to_create, to_update)))
}

/// Suspects: active local users the crawl did not see. Only a complete crawl may accuse anyone,
/// and each suspect is asked about by id: paging can miss a user when others come and go.
async fn confirm_suspects(
    services: &Services,
    run: &mut SyncRun,
    counts: &mut SyncCounts,
    known: &IdMap<Known>,
    members: &Memberships,
    crawled: &mut Crawled,
) -> Result<(), Error> {
    let (names, kc) = (&services.config.user_attributes, &services.keycloak);
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
                let username = services
                    .store
                    .get_user(&id)
                    .await?
                    .map(|u| u.keycloak.username);
                let deleted = (id, username.unwrap_or_default(), Deactivation::Deleted);
                crawled.deactivations.push(deleted);
            }
            Ok(rep) => {
                let membership = members.of(combination_of(&rep.id));
                let (f, b) = fields_of(&rep, Some(&membership), names);
                if rep.enabled {
                    counts.missed_by_paging += 1;
                    crawled.missed.push((rep.id, f, b, now_ms()));
                } else {
                    let disabled = Deactivation::Disabled(Box::new((f, b)));
                    crawled.deactivations.push((id, rep.username, disabled));
                }
            }
            Err(e) => {
                counts.failed += 1;
                run.errors.push(format!("confirming {id}: {e}"));
            }
        }
    }
    Ok(())
}

/// The end of a full run: a dry run's plan, or the missed users written and the deactivations
/// applied (or held for approval above the guard), the run's status and the sync state.
async fn settle(
    services: &Services,
    req: &SyncRequest,
    run: &mut SyncRun,
    counts: &mut SyncCounts,
    crawled: Crawled,
) -> Result<(), Error> {
    let store = &services.store;
    let Crawled {
        deactivations,
        missed,
        ..
    } = crawled;
    counts.only_local += deactivations
        .iter()
        .filter(|d| matches!(d.2, Deactivation::Deleted))
        .count() as u64;
    let guard_ok = services
        .config
        .sync_max_deactivations
        .allows(deactivations.len() as u64, crawled.active.max(1));
    let plan = deactivation_plan(&deactivations);
    if req.dry_run {
        let (create, update) = (crawled.to_create, crawled.to_update + missed.len());
        run.plan = Some(json!({"create": create, "update": update, "deactivate": plan}));
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
        run.status = if !crawled.complete {
            SyncStatus::Incomplete
        } else if counts.failed > 0 {
            SyncStatus::Partial
        } else {
            SyncStatus::Succeeded
        };
    }
    record_state(services, run, crawled.active).await
}

/// The sync state after a full run; after a successful one, the event cursor at its start.
async fn record_state(services: &Services, run: &SyncRun, active: u64) -> Result<(), Error> {
    let store = &services.store;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_costs_30_bytes_in_the_full_runs_map() {
        // The README's memory per user: the sorted vector's entry, a 16-byte id and its state.
        assert_eq!(std::mem::size_of::<([u8; 16], Known)>(), 30);
    }
}
