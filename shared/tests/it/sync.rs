//! The bulk sync against the Keycloak emulator and DynamoDB Local: full and incremental
//! reconcile, and every way it must refuse to deactivate someone by mistake.

#![allow(clippy::unwrap_used)]

use crate::common;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{json, Value};
use user_sync::features::sync::{run, Mode, SyncRequest};
use user_sync::outside::keycloak::UserUpdate;
use user_sync::outside::store::{Attributes, KeycloakFields, LoginRecord, Session, UserStatus};
use user_sync::services::Services;

struct Setup {
    realm: common::Realm,
    services: Services,
}

async fn setup_with(realm: common::Realm, vars: &[(&str, &str)]) -> Setup {
    let mut with_guard = vec![("SYNC_MAX_DEACTIVATIONS", "50,100%")];
    with_guard.extend_from_slice(vars);
    Setup {
        services: common::services(&realm, &with_guard).await,
        realm,
    }
}

async fn setup(vars: &[(&str, &str)]) -> Setup {
    setup_with(common::realm().await, vars).await
}

fn full() -> SyncRequest {
    SyncRequest {
        mode: Mode::Full,
        dry_run: false,
        force: false,
        run_id: None,
        deadline_ms: None,
    }
}

fn count(run: &user_sync::outside::store::SyncRun, key: &str) -> u64 {
    serde_json::to_value(&run.counts).unwrap()[key]
        .as_u64()
        .unwrap()
}

/// The run's status as the API spells it.
fn status(run: &user_sync::outside::store::SyncRun) -> String {
    serde_json::to_value(run.status)
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

/// What the run reconciled, in words.
fn mode(run: &user_sync::outside::store::SyncRun) -> &'static str {
    match (run.mode, run.escalated) {
        (Mode::Full, _) => "full",
        (Mode::Incremental, false) => "incremental",
        (Mode::Incremental, true) => "incremental->full",
    }
}

impl Setup {
    /// Keycloak changes the user's last name (an admin's update).
    async fn set_last_name(&self, id: &str, last_name: &str) {
        let change = UserUpdate {
            last_name: Some(last_name.into()),
            ..Default::default()
        };
        self.services
            .keycloak
            .update_user(id, &change)
            .await
            .unwrap();
    }

    async fn id_of(&self, username: &str) -> String {
        self.services
            .keycloak
            .find_user_by_username(username)
            .await
            .unwrap()
            .unwrap()
            .id
    }
    /// `count` more users in Keycloak, named `prefix` and a number (the emulator's bulk import).
    async fn add_users(&self, prefix: &str, count: usize) {
        let url = format!(
            "{}/_emulator/realms/{}/users/bulk",
            common::emulator(),
            self.realm.name
        );
        let body = json!({"count": count, "prefix": prefix});
        let r = self.realm.http.post(url).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 201);
    }
    async fn local(&self, username: &str) -> user_sync::outside::store::User {
        let id = self.id_of(username).await;
        self.services.store.get_user(&id).await.unwrap().unwrap()
    }
}

#[tokio::test]
async fn a_first_sync_creates_every_user_with_roles_groups_and_attributes() {
    let s = setup(&[]).await;
    let r = run(&s.services, full()).await.unwrap();
    assert_eq!(status(&r), "succeeded", "{:?}", r.errors);
    assert_eq!((count(&r, "seen"), count(&r, "created")), (3, 3));
    let alice = s.local("alice").await;
    assert_eq!(
        alice.keycloak.roles,
        vec!["admin", "user"],
        "effective roles, technical ones left out"
    );
    assert_eq!(alice.keycloak.groups, vec!["/engineering"]);
    assert_eq!(alice.attributes["organization"], "Acme");
    assert_eq!(alice.status, UserStatus::Active);
}

#[tokio::test]
async fn a_resync_with_no_change_writes_nothing() {
    let s = setup(&[]).await;
    run(&s.services, full()).await.unwrap();
    let before = s.local("carol").await;
    let r = run(&s.services, full()).await.unwrap();
    assert_eq!(
        (
            count(&r, "unchanged"),
            count(&r, "created"),
            count(&r, "updated")
        ),
        (3, 0, 0)
    );
    assert_eq!(s.local("carol").await, before);
}

#[tokio::test]
async fn a_login_and_a_sync_agree_on_a_users_content() {
    let s = setup(&[]).await;
    let tokens = s
        .services
        .keycloak
        .password_grant("alice", "alice-dev-password")
        .await
        .unwrap();
    let p = s
        .services
        .bearer
        .validate(&tokens.access_token)
        .await
        .unwrap();
    let fields = KeycloakFields {
        username: "alice".into(),
        email: Some("alice@example.com".into()),
        first_name: Some("Alice".into()),
        last_name: Some("Admin".into()),
        enabled: true,
        email_verified: true,
        roles: p
            .realm_roles
            .iter()
            .filter(|r| !user_sync::features::observe::is_technical_role(r))
            .cloned()
            .collect(),
        groups: p.claims["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_str().unwrap().to_owned())
            .collect(),
    };
    let login = LoginRecord {
        user_id: p.user_id.clone(),
        fields,
        attributes: Attributes::new(),
        at: user_sync::base::clock::now_ms(),
    };
    s.services
        .store
        .record_login(&login, &session(&p.user_id, "s1"))
        .await
        .unwrap();
    let r = run(&s.services, full()).await.unwrap();
    assert_eq!(
        count(&r, "unchanged"),
        1,
        "the token's identity hashes like the sync's: {:?}",
        r.counts
    );
}

fn session(user_id: &str, sid: &str) -> Session {
    Session {
        user_id: user_id.into(),
        sid: sid.into(),
        created_at: 1,
        refreshed_at: None,
        refresh_count: 0,
        ip: None,
        user_agent: None,
        refresh_token_sha256: "x".into(),
        previous_refresh_token_sha256: None,
        expires_at: user_sync::base::clock::EpochSecs(9_999_999_999),
        ended_at: None,
        end_reason: None,
        client_id: None,
        last_seen_at: None,
    }
}

#[tokio::test]
async fn changed_disabled_and_deleted_users_are_brought_in_step() {
    let s = setup(&[]).await;
    run(&s.services, full()).await.unwrap();
    let kc = &s.services.keycloak;
    let (carol, bob, alice) = (
        s.id_of("carol").await,
        s.id_of("bob").await,
        s.id_of("alice").await,
    );
    s.set_last_name(&carol, "Changed").await;
    kc.update_user(
        &bob,
        &UserUpdate {
            enabled: Some(false),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    s.services
        .store
        .put_session(&session(&alice, "open"))
        .await
        .unwrap();
    kc.delete_user(&alice).await.unwrap();
    let r = run(&s.services, full()).await.unwrap();
    assert_eq!(status(&r), "succeeded", "{:?}", r.errors);
    assert_eq!(
        (count(&r, "updated"), count(&r, "deactivated")),
        (2, 1),
        "{:?}",
        r.counts
    );
    let store = &s.services.store;
    assert_eq!(
        store
            .get_user(&carol)
            .await
            .unwrap()
            .unwrap()
            .keycloak
            .last_name
            .as_deref(),
        Some("Changed")
    );
    assert_eq!(
        store.get_user(&bob).await.unwrap().unwrap().status,
        UserStatus::Disabled
    );
    let gone = store.get_user(&alice).await.unwrap().unwrap();
    assert_eq!(
        (gone.status, gone.deleted_reason.as_deref()),
        (UserStatus::Deleted, Some("missing_in_keycloak"))
    );
    assert!(
        store
            .get_session(&alice, "open")
            .await
            .unwrap()
            .unwrap()
            .ended_at
            .is_some(),
        "deactivation ends sessions"
    );
}

#[tokio::test]
async fn a_page_failing_mid_crawl_deactivates_nobody_and_marks_the_run_incomplete() {
    let s = setup(&[("SYNC_PAGE_SIZE", "1"), ("SYNC_CONCURRENCY", "1")]).await;
    run(&s.services, full()).await.unwrap();
    let carol = s.id_of("carol").await;
    s.services.keycloak.delete_user(&carol).await.unwrap();
    s.realm.fault(json!({"method": "GET", "path": "/admin/realms/{realm}/users", "queryContains": "first=0&", "status": 503})).await;
    let r = run(&s.services, full()).await.unwrap();
    assert_eq!(status(&r), "incomplete");
    assert_eq!(count(&r, "deactivated"), 0);
    assert_eq!(
        s.services
            .store
            .get_user(&carol)
            .await
            .unwrap()
            .unwrap()
            .status,
        UserStatus::Active
    );
}

#[tokio::test]
async fn a_membership_read_failing_while_the_digest_is_read_fails_the_run_and_writes_nothing() {
    // The role members and the store's digest are read at the same time: Keycloak failing on
    // the members ends the run before the crawl, whatever the digest's scan had read by then.
    let s = setup(&[]).await;
    run(&s.services, full()).await.unwrap();
    let (carol, alice) = (s.id_of("carol").await, s.id_of("alice").await);
    let kc = &s.services.keycloak;
    s.set_last_name(&carol, "Changed").await;
    kc.delete_user(&alice).await.unwrap();
    let rule = s
        .realm
        .fault(
            json!({"method": "GET", "path": "/admin/realms/{realm}/roles/*/users", "status": 503}),
        )
        .await;
    let r = run(&s.services, full()).await;
    assert!(s.realm.hits(&rule).await > 0, "the members were asked for");
    assert!(
        matches!(r, Err(user_sync::Error::Keycloak(_))),
        "the run fails on Keycloak's answer: {r:?}"
    );
    let store = &s.services.store;
    let carol = store.get_user(&carol).await.unwrap().unwrap();
    assert_ne!(carol.keycloak.last_name.as_deref(), Some("Changed"));
    assert_eq!(
        store.get_user(&alice).await.unwrap().unwrap().status,
        UserStatus::Active
    );
}

#[tokio::test]
async fn a_user_the_crawl_misses_but_keycloak_has_is_not_deactivated() {
    // Offset drift (someone earlier in the order deleted while the crawl runs) or a user registered
    // during the run: the store has them, the pages do not. Page 1 answers as if shifted by one.
    let s = setup(&[("SYNC_PAGE_SIZE", "1"), ("SYNC_CONCURRENCY", "1")]).await;
    run(&s.services, full()).await.unwrap();
    let carol_page: Value = s
        .realm
        .http
        .get(format!(
            "{}/admin/realms/{}/users?first=2&max=1",
            common::emulator(),
            s.realm.name
        ))
        .bearer_auth(
            s.services
                .keycloak
                .client_credentials()
                .await
                .unwrap()
                .access_token,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    s.realm.fault(json!({"method": "GET", "path": "/admin/realms/{realm}/users", "queryContains": "first=1&", "status": 200, "body": carol_page})).await;
    let r = run(&s.services, full()).await.unwrap();
    assert_eq!(status(&r), "succeeded", "{:?}", r.errors);
    assert_eq!(
        (count(&r, "missedByPaging"), count(&r, "deactivated")),
        (1, 0)
    );
    assert_eq!(s.local("bob").await.status, UserStatus::Active);
}

#[tokio::test]
async fn deletions_above_the_guard_need_approval_then_force_applies_them() {
    let s = setup(&[("SYNC_MAX_DEACTIVATIONS", "1,100%")]).await;
    run(&s.services, full()).await.unwrap();
    let (bob, carol) = (s.id_of("bob").await, s.id_of("carol").await);
    s.services.keycloak.delete_user(&bob).await.unwrap();
    s.services.keycloak.delete_user(&carol).await.unwrap();
    let r = run(&s.services, full()).await.unwrap();
    assert_eq!(
        (status(&r).as_str(), count(&r, "deactivated")),
        ("needs_approval", 0)
    );
    assert_eq!(
        r.plan.as_ref().unwrap()["deactivate"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        s.services
            .store
            .get_user(&bob)
            .await
            .unwrap()
            .unwrap()
            .status,
        UserStatus::Active
    );
    let forced = run(
        &s.services,
        SyncRequest {
            force: true,
            ..full()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (status(&forced).as_str(), count(&forced, "deactivated")),
        ("succeeded", 2)
    );
    assert_eq!(
        s.services
            .store
            .get_user(&bob)
            .await
            .unwrap()
            .unwrap()
            .status,
        UserStatus::Deleted
    );
}

#[tokio::test]
async fn a_dry_run_writes_nothing_but_its_run_record() {
    let s = setup(&[]).await;
    let r = run(
        &s.services,
        SyncRequest {
            dry_run: true,
            ..full()
        },
    )
    .await
    .unwrap();
    assert_eq!(status(&r), "dry_run");
    assert_eq!(r.plan.as_ref().unwrap()["create"], 3);
    let mut stored = user_sync::base::ids::IdMap::<u8>::default();
    s.services
        .store
        .scan_digest(0, |id, _| *stored.entry(id) += 1)
        .await
        .unwrap();
    assert!(stored.is_empty());
    let stored = s.services.store.get_run(&r.run_id).await.unwrap().unwrap();
    assert_eq!(status(&stored), "dry_run");
}

#[tokio::test]
async fn two_runs_at_once_one_is_skipped() {
    let s = setup(&[]).await;
    s.realm
        .fault(json!({"method": "GET", "path": "/admin/realms/{realm}/users", "latencyMs": 400}))
        .await;
    let (a, b) = tokio::join!(run(&s.services, full()), run(&s.services, full()));
    let mut statuses = [status(&a.unwrap()), status(&b.unwrap())];
    statuses.sort();
    assert_eq!(statuses, ["skipped".to_owned(), "succeeded".to_owned()]);
}

#[tokio::test]
async fn a_crashed_runs_lease_expires_and_the_next_run_goes_ahead() {
    let s = setup(&[]).await;
    let now = user_sync::base::clock::now_ms();
    assert!(s
        .services
        .store
        .acquire_lease("crashed-run", now - 1, now - 1000)
        .await
        .unwrap());
    assert_eq!(
        status(&run(&s.services, full()).await.unwrap()),
        "succeeded"
    );
}

/// Every crawl page of the realm answered 2 s late: a login can land while pages are in flight.
async fn slow_crawl(s: &Setup) {
    s.realm
        .fault(json!({"method": "GET", "path": "/admin/realms/{realm}/users", "latencyMs": 2000}))
        .await;
}

/// `user` signs in 1 s from now, with these fields as their token states them.
async fn sign_in_soon(services: &Services, user: &str, fields: KeycloakFields, sid: &str) {
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    let record = LoginRecord {
        user_id: user.to_owned(),
        fields,
        attributes: Attributes::new(),
        at: user_sync::base::clock::now_ms(),
    };
    services
        .store
        .record_login(&record, &session(user, sid))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_user_first_stored_while_the_crawl_pages_is_not_overwritten_by_its_create() {
    let s = setup(&[]).await;
    let carol = s.id_of("carol").await;
    // The store is empty, so the run's digest does not have carol; she signs in (and gets her
    // record) while the crawl's pages are in flight.
    slow_crawl(&s).await;
    let services = &s.services;
    let sync = run(services, full());
    let rep = services.keycloak.get_user(&carol).await.unwrap();
    let fields = KeycloakFields {
        username: rep.username,
        first_name: Some("SignedIn".into()),
        enabled: true,
        ..Default::default()
    };
    let login = sign_in_soon(services, &carol, fields, "s1");
    let (r, ()) = tokio::join!(sync, login);
    let r = r.unwrap();
    assert_eq!(status(&r), "succeeded", "{:?}", r.errors);
    assert_eq!((r.counts.created, r.counts.skipped_newer), (2, 1));
    let local = services.store.get_user(&carol).await.unwrap().unwrap();
    assert_eq!(local.keycloak.first_name.as_deref(), Some("SignedIn"));
    assert_eq!(local.login_count, 1);
    assert!(services
        .store
        .get_user(&s.id_of("bob").await)
        .await
        .unwrap()
        .is_some());
}

/// A task does not inherit the invocation's deadline by itself: the crawl's pages (and the
/// digest's segments and the writes) run in tasks of their own, and a page that hung held the
/// run past the deadline, until the Keycloak client's own timeouts gave up.
#[tokio::test]
async fn a_crawl_page_that_hangs_is_cut_at_the_invocations_deadline_and_the_run_recorded() {
    use std::time::{Duration, Instant};
    use user_sync::base::deadline;
    let s = setup(&[]).await;
    s.realm
        .fault(json!({"method": "GET", "path": "/admin/realms/{realm}/users", "latencyMs": 30000}))
        .await;
    let started = Instant::now();
    let at = started + deadline::MARGIN + Duration::from_secs(2);
    let r = deadline::within(Some(at), run(&s.services, full())).await;
    assert!(
        Instant::now() < at,
        "answered {:?} after the start, past the deadline",
        started.elapsed()
    );
    let e = r.expect_err("a run cut off at its deadline fails");
    assert!(e.to_string().contains("deadline"), "{e}");
    let store = &s.services.store;
    let recorded = store.recent_runs(1).await.unwrap();
    assert_eq!(
        recorded.iter().map(status).collect::<Vec<_>>(),
        ["failed"],
        "the run record says how it ended"
    );
    assert_eq!(count(&recorded[0], "deactivated"), 0);
    let now = user_sync::base::clock::now_ms();
    assert!(
        store
            .acquire_lease("next-run", now + 1000, now)
            .await
            .unwrap(),
        "the lease was released: the next run need not wait for it to expire"
    );
}

#[tokio::test]
async fn a_login_during_a_run_keeps_its_newer_identity_and_last_login() {
    let s = setup(&[]).await;
    run(&s.services, full()).await.unwrap();
    let carol = s.id_of("carol").await;
    // Slow down the crawl's pages, and sign in while they are in flight: the page was asked for
    // before the login, so the login is the newer observation.
    slow_crawl(&s).await;
    s.services
        .keycloak
        .update_user(
            &carol,
            &UserUpdate {
                first_name: Some("Crawled".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let services = &s.services;
    let mut fields = s.local("carol").await.keycloak.clone();
    fields.first_name = Some("SignedIn".into());
    let sync = run(services, full());
    let login = sign_in_soon(services, &carol, fields, "s9");
    let (r, ()) = tokio::join!(sync, login);
    assert_eq!(status(&r.unwrap()), "succeeded");
    let local = services.store.get_user(&carol).await.unwrap().unwrap();
    assert_eq!(
        local.keycloak.first_name.as_deref(),
        Some("SignedIn"),
        "the older crawl did not overwrite the login"
    );
    assert!(local.last_login_at.is_some());
    assert_eq!(local.login_count, 1);
}

#[tokio::test]
async fn incremental_sync_picks_up_a_create_an_update_and_a_delete() {
    let s = setup(&[]).await;
    run(&s.services, full()).await.unwrap();
    let kc = &s.services.keycloak;
    let new_id = kc
        .create_user(&user_sync::outside::keycloak::NewUser {
            username: "newbie".into(),
            email: Some("newbie@example.org".into()),
            enabled: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let (carol, bob) = (s.id_of("carol").await, s.id_of("bob").await);
    kc.update_user(
        &carol,
        &UserUpdate {
            first_name: Some("Carolyn".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    kc.delete_user(&bob).await.unwrap();
    let r = run(
        &s.services,
        SyncRequest {
            mode: Mode::Incremental,
            ..full()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (mode(&r), status(&r).as_str()),
        ("incremental", "succeeded"),
        "{:?}",
        r.errors
    );
    let store = &s.services.store;
    assert_eq!(
        store
            .get_user(&new_id)
            .await
            .unwrap()
            .unwrap()
            .keycloak
            .username,
        "newbie"
    );
    assert_eq!(
        store
            .get_user(&carol)
            .await
            .unwrap()
            .unwrap()
            .keycloak
            .first_name
            .as_deref(),
        Some("Carolyn")
    );
    assert_eq!(
        store.get_user(&bob).await.unwrap().unwrap().status,
        UserStatus::Deleted
    );
    let again = run(
        &s.services,
        SyncRequest {
            mode: Mode::Incremental,
            ..full()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        count(&again, "created") + count(&again, "updated"),
        0,
        "{:?}",
        again.counts
    );
}

#[tokio::test]
async fn an_events_gap_triggers_a_full_run() {
    let realm = common::realm().await;
    let s = setup_with(realm, &[]).await;
    let r = run(
        &s.services,
        SyncRequest {
            mode: Mode::Incremental,
            ..full()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (mode(&r), status(&r).as_str()),
        ("incremental->full", "succeeded"),
        "no cursor yet"
    );
    assert_eq!(count(&r, "created"), 3);
    let quiet = setup_with(
        common::realm_with(json!({"adminEventsEnabled": false})).await,
        &[],
    )
    .await;
    run(&quiet.services, full()).await.unwrap();
    let r = run(
        &quiet.services,
        SyncRequest {
            mode: Mode::Incremental,
            ..full()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        mode(&r),
        "incremental->full",
        "admin events off: events cannot be trusted"
    );
}

#[tokio::test]
async fn a_user_marked_missing_comes_back_when_keycloak_has_them_again() {
    let s = setup(&[]).await;
    run(&s.services, full()).await.unwrap();
    let carol = s.id_of("carol").await;
    let store = &s.services.store;
    assert!(store
        .mark_missing(&carol, user_sync::base::clock::now_ms())
        .await
        .unwrap());
    let r = run(&s.services, full()).await.unwrap();
    assert_eq!(count(&r, "reactivated"), 1, "{:?}", r.counts);
    let back = store.get_user(&carol).await.unwrap().unwrap();
    assert_eq!(
        (back.status, back.deleted_reason),
        (UserStatus::Active, None)
    );
}

#[tokio::test]
async fn a_run_without_time_to_make_progress_fails_instead_of_handing_over_forever() {
    let s = setup(&[]).await;
    let r = run(
        &s.services,
        SyncRequest {
            deadline_ms: Some(user_sync::base::clock::now_ms()),
            ..full()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (
            status(&r).as_str(),
            count(&r, "created"),
            count(&r, "deactivated")
        ),
        ("failed", 0, 0)
    );
    let next = run(&s.services, full()).await.unwrap();
    assert_eq!(
        (status(&next).as_str(), count(&next, "created")),
        ("succeeded", 3)
    );
}

/// More changed users than a round of writes takes (64): the rounds are written in a task of
/// their own while the crawl reads on, and every change is written, and counted, once.
#[tokio::test]
async fn changes_beyond_one_round_of_writes_are_all_written_and_counted_once() {
    let s = setup(&[]).await;
    s.add_users("round", 300).await;
    run(&s.services, full()).await.unwrap();
    let users = s.services.keycloak.list_users(0, 400, false).await.unwrap();
    let changed: Vec<String> = users
        .iter()
        .filter(|u| u.username.starts_with("round"))
        .take(200)
        .map(|u| u.id.clone())
        .collect();
    assert_eq!(changed.len(), 200);
    for id in &changed {
        s.set_last_name(id, "Rounds").await;
    }
    let r = run(&s.services, full()).await.unwrap();
    assert_eq!(status(&r), "succeeded", "{:?}", r.errors);
    assert_eq!(
        [
            count(&r, "updated"),
            count(&r, "unchanged"),
            count(&r, "failed")
        ],
        [200, users.len() as u64 - 200, 0]
    );
    for id in &changed {
        let local = s.services.store.get_user(id).await.unwrap().unwrap();
        assert_eq!(local.keycloak.last_name.as_deref(), Some("Rounds"));
    }
}

#[tokio::test]
async fn a_run_out_of_time_after_some_writes_hands_over_and_the_follow_up_finishes() {
    // 1 200 more users: written in batches of 500, with the budget spent after the first ones.
    let s = setup(&[]).await;
    s.add_users("bulk", 1200).await;
    // A budget of 1.5 s: on this machine the crawl and the first batches fit, the rest does not.
    let (services, invocations) =
        common::services_with_lambda(&s.realm, &[("SYNC_MAX_DEACTIVATIONS", "50,100%")]).await;
    let deadline = user_sync::base::clock::now_ms() + 1_500;
    let r = run(
        &services,
        SyncRequest {
            deadline_ms: Some(deadline),
            ..full()
        },
    )
    .await
    .unwrap();
    match status(&r).as_str() {
        "continued" => {
            assert!(count(&r, "created") > 0, "{:?}", r.counts);
            // The rest was handed to a new asynchronous invocation of this function.
            assert_eq!(
                *invocations.lock().unwrap(),
                vec![(
                    "bulk-sync".to_owned(),
                    json!({"mode": "full", "dryRun": false, "force": false})
                )]
            );
            let follow_up = run(&services, full()).await.unwrap();
            assert_eq!(status(&follow_up), "succeeded");
            assert_eq!(
                count(&follow_up, "created") + count(&r, "created"),
                1203,
                "nothing twice, nothing lost"
            );
        }
        // A fast machine wrote everything within the budget, or a slow one read too long to
        // write anything: either way nobody was written twice or lost.
        "succeeded" => assert_eq!(count(&r, "created"), 1203),
        other => assert_eq!((other, count(&r, "created")), ("failed", 0)),
    }
}

#[test]
fn the_hand_over_leaves_a_minute_or_a_fifth_of_the_time() {
    use user_sync::features::sync::stop_writing_at;
    assert_eq!(stop_writing_at(900_000, 0), 840_000);
    assert_eq!(stop_writing_at(30_000, 0), 24_000);
}

/// The run ended `partial`, with one failure, and its errors name the user.
fn assert_partial_naming(run: &user_sync::outside::store::SyncRun, id: &str) {
    assert_eq!(
        (status(run).as_str(), count(run, "failed")),
        ("partial", 1),
        "{:?}",
        run.errors
    );
    assert!(
        run.errors.iter().any(|e| e.contains(id)),
        "{:?}",
        run.errors
    );
}

fn incremental() -> SyncRequest {
    SyncRequest {
        mode: Mode::Incremental,
        ..full()
    }
}

impl Setup {
    /// A full run, so that incremental runs have a cursor (and the guard an active count).
    async fn synced(vars: &[(&str, &str)]) -> Setup {
        let s = setup(vars).await;
        let r = run(&s.services, full()).await.unwrap();
        assert_eq!(status(&r), "succeeded", "{:?}", r.errors);
        s
    }

    async fn rename(&self, id: &str, last_name: &str) {
        self.services
            .keycloak
            .update_user(
                id,
                &UserUpdate {
                    last_name: Some(last_name.into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }

    async fn cursor(&self) -> Option<i64> {
        self.services
            .store
            .sync_state()
            .await
            .unwrap()
            .event_cursor_ms
    }

    /// The time of the newest admin event on a user, as Keycloak stored it.
    async fn last_event_at(&self, id: &str) -> i64 {
        let events = self
            .services
            .keycloak
            .admin_events(&user_sync::outside::keycloak::EventQuery {
                types: vec!["USER".into()],
                max: 500,
                ..Default::default()
            })
            .await
            .unwrap();
        events
            .iter()
            .filter(|e| e.user_id() == Some(id))
            .map(|e| e.time)
            .max()
            .unwrap()
    }

    /// Set one attribute of a user's stored item, behind the store's back.
    async fn set_raw(&self, id: &str, attribute: &str, value: AttributeValue) {
        common::dynamodb()
            .update_item()
            .table_name(self.services.store.table_name())
            .key("pk", AttributeValue::S(format!("USER#{id}")))
            .key("sk", AttributeValue::S("PROFILE".into()))
            .update_expression("SET #a = :v")
            .expression_attribute_names("#a", attribute)
            .expression_attribute_values(":v", value)
            .send()
            .await
            .unwrap();
    }

    /// The stored item is no longer what the store wrote (its version is not a number):
    /// DynamoDB and the store refuse to write it. Answers the version to put back.
    async fn make_unwritable(&self, id: &str) -> u64 {
        let version = self
            .services
            .store
            .get_user(id)
            .await
            .unwrap()
            .unwrap()
            .version;
        self.set_raw(id, "version", AttributeValue::S("not-a-number".into()))
            .await;
        version
    }

    async fn make_writable(&self, id: &str, version: u64) {
        self.set_raw(id, "version", AttributeValue::N(version.to_string()))
            .await;
    }

    async fn stored_status(&self, id: &str) -> UserStatus {
        self.services
            .store
            .get_user(id)
            .await
            .unwrap()
            .unwrap()
            .status
    }
}

#[tokio::test]
async fn an_incremental_run_out_of_time_before_a_write_leaves_the_cursor_and_the_next_run_applies_it(
) {
    let s = Setup::synced(&[]).await;
    let carol = s.id_of("carol").await;
    s.rename(&carol, "Retried").await;
    let renamed_at = s.last_event_at(&carol).await;
    let late = run(
        &s.services,
        SyncRequest {
            deadline_ms: Some(user_sync::base::clock::now_ms() - 1),
            ..incremental()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (status(&late).as_str(), count(&late, "updated")),
        ("partial", 0),
        "{:?}",
        late.errors
    );
    assert_eq!(
        s.cursor().await,
        Some(renamed_at - 1),
        "the cursor stopped just before carol's event"
    );
    assert_eq!(
        s.local("carol").await.keycloak.last_name.as_deref(),
        Some("User")
    );
    let next = run(&s.services, incremental()).await.unwrap();
    assert_eq!(status(&next), "succeeded", "{:?}", next.errors);
    assert_eq!(
        s.local("carol").await.keycloak.last_name.as_deref(),
        Some("Retried")
    );
    assert!(s.cursor().await >= Some(renamed_at));
}

#[tokio::test]
async fn a_user_whose_record_cannot_be_read_or_written_is_listed_and_read_again_next_run() {
    let s = Setup::synced(&[]).await;
    let carol = s.id_of("carol").await;
    let version = s.make_unwritable(&carol).await;
    s.rename(&carol, "Retried").await;
    let failed = run(&s.services, incremental()).await.unwrap();
    assert_partial_naming(&failed, &carol);
    let renamed_at = s.last_event_at(&carol).await;
    assert_eq!(s.cursor().await, Some(renamed_at - 1));
    s.make_writable(&carol, version).await;
    let next = run(&s.services, incremental()).await.unwrap();
    assert_eq!(status(&next), "succeeded", "{:?}", next.errors);
    assert_eq!(
        s.local("carol").await.keycloak.last_name.as_deref(),
        Some("Retried")
    );
}

#[tokio::test]
async fn a_full_run_with_a_failed_write_ends_partial_and_keeps_the_cursor_for_the_next_run() {
    let s = Setup::synced(&[]).await;
    let carol = s.id_of("carol").await;
    let (cursor, succeeded_at) = (
        s.cursor().await,
        s.services.store.sync_state().await.unwrap().last_success_at,
    );
    let version = s.make_unwritable(&carol).await;
    s.rename(&carol, "Retried").await;
    let failed = run(&s.services, full()).await.unwrap();
    assert_partial_naming(&failed, &carol);
    let state = s.services.store.sync_state().await.unwrap();
    assert_eq!(
        (state.event_cursor_ms, state.last_success_at),
        (cursor, succeeded_at),
        "a partial full run moves neither the cursor nor the last success"
    );
    s.make_writable(&carol, version).await;
    let next = run(&s.services, incremental()).await.unwrap();
    assert_eq!(status(&next), "succeeded", "{:?}", next.errors);
    assert_eq!(
        s.local("carol").await.keycloak.last_name.as_deref(),
        Some("Retried")
    );
}

#[tokio::test]
async fn a_single_404_in_an_incremental_run_leaves_the_user_active_and_their_sessions_alive() {
    let s = Setup::synced(&[]).await;
    let carol = s.id_of("carol").await;
    s.services
        .store
        .put_session(&session(&carol, "open"))
        .await
        .unwrap();
    s.rename(&carol, "StillHere").await;
    let blip = s
        .realm
        .fault(
            json!({"method": "GET", "path": format!("/admin/realms/{{realm}}/users/{carol}"),
            "status": 404, "body": {"error": "User not found"}, "times": 1}),
        )
        .await;
    let r = run(&s.services, incremental()).await.unwrap();
    assert!(s.realm.spent(&blip).await, "the first read was the 404");
    assert_eq!(
        (
            status(&r).as_str(),
            count(&r, "deactivated"),
            count(&r, "updated")
        ),
        ("succeeded", 0, 1),
        "{:?}",
        r.errors
    );
    let local = s.local("carol").await;
    assert_eq!(
        (local.status, local.keycloak.last_name.as_deref()),
        (UserStatus::Active, Some("StillHere"))
    );
    let open = s
        .services
        .store
        .get_session(&carol, "open")
        .await
        .unwrap()
        .unwrap();
    assert!(open.ended_at.is_none());
}

#[tokio::test]
async fn a_404_the_user_search_contradicts_leaves_the_user_as_they_were_and_is_read_again() {
    let s = Setup::synced(&[]).await;
    let carol = s.id_of("carol").await;
    s.services
        .store
        .put_session(&session(&carol, "open"))
        .await
        .unwrap();
    s.rename(&carol, "Later").await;
    s.realm
        .fault(
            json!({"method": "GET", "path": format!("/admin/realms/{{realm}}/users/{carol}"),
            "status": 404, "body": {"error": "User not found"}, "times": 2}),
        )
        .await;
    let r = run(&s.services, incremental()).await.unwrap();
    assert_eq!(
        (
            status(&r).as_str(),
            count(&r, "deactivated"),
            count(&r, "unconfirmed")
        ),
        ("partial", 0, 1),
        "{:?}",
        r.errors
    );
    assert_eq!(s.local("carol").await.status, UserStatus::Active);
    let open = s
        .services
        .store
        .get_session(&carol, "open")
        .await
        .unwrap()
        .unwrap();
    assert!(open.ended_at.is_none());
    assert_eq!(s.cursor().await, Some(s.last_event_at(&carol).await - 1));
    let next = run(&s.services, incremental()).await.unwrap();
    assert_eq!(status(&next), "succeeded", "{:?}", next.errors);
    assert_eq!(
        s.local("carol").await.keycloak.last_name.as_deref(),
        Some("Later")
    );
}

#[tokio::test]
async fn a_user_deleted_in_keycloak_is_deactivated_by_an_incremental_run_once_confirmed() {
    let s = Setup::synced(&[]).await;
    let bob = s.id_of("bob").await;
    s.services.keycloak.delete_user(&bob).await.unwrap();
    let r = run(&s.services, incremental()).await.unwrap();
    assert_eq!(
        (status(&r).as_str(), count(&r, "deactivated")),
        ("succeeded", 1),
        "{:?}",
        r.errors
    );
    assert_eq!(s.stored_status(&bob).await, UserStatus::Deleted);
}

#[tokio::test]
async fn incremental_deactivations_above_the_guard_wait_for_approval_and_keep_their_events() {
    let s = Setup::synced(&[("SYNC_MAX_DEACTIVATIONS", "1,100%")]).await;
    let (bob, carol) = (s.id_of("bob").await, s.id_of("carol").await);
    for id in [&bob, &carol] {
        s.services.keycloak.delete_user(id).await.unwrap();
    }
    let r = run(&s.services, incremental()).await.unwrap();
    assert_eq!(
        (status(&r).as_str(), count(&r, "deactivated")),
        ("needs_approval", 0),
        "{:?}",
        r.errors
    );
    let first_delete = s
        .last_event_at(&bob)
        .await
        .min(s.last_event_at(&carol).await);
    assert_eq!(s.cursor().await, Some(first_delete - 1));
    assert_eq!(s.stored_status(&bob).await, UserStatus::Active);
    let forced = run(
        &s.services,
        SyncRequest {
            force: true,
            ..incremental()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (status(&forced).as_str(), count(&forced, "deactivated")),
        ("succeeded", 2),
        "{:?}",
        forced.errors
    );
}

#[tokio::test]
async fn the_projects_own_writes_come_back_as_echoes_and_are_not_read_again() {
    let s = Setup::synced(&[]).await;
    let carol = s.id_of("carol").await;
    // Written by this project's service client, then applied to the store (as an admin PATCH
    // does): the admin event is an echo of a change already applied.
    s.rename(&carol, "Echo").await;
    let full_run = run(&s.services, full()).await.unwrap();
    assert_eq!(count(&full_run, "updated"), 1, "{:?}", full_run.errors);
    let reads = s
        .realm
        .fault(json!({"method": "GET",
        "path": format!("/admin/realms/{{realm}}/users/{carol}"), "latencyMs": 0}))
        .await;
    let r = run(&s.services, incremental()).await.unwrap();
    assert_eq!(
        (
            status(&r).as_str(),
            count(&r, "echoes"),
            count(&r, "updated")
        ),
        ("succeeded", 1, 0),
        "{:?}",
        r.errors
    );
    assert_eq!(
        s.realm.hits(&reads).await,
        0,
        "the echo was not read from Keycloak"
    );
}

#[tokio::test]
async fn an_own_write_the_store_does_not_hold_yet_is_read_and_applied() {
    let s = Setup::synced(&[]).await;
    let carol = s.id_of("carol").await;
    s.rename(&carol, "NotYetStored").await;
    let r = run(&s.services, incremental()).await.unwrap();
    assert_eq!(
        (
            status(&r).as_str(),
            count(&r, "echoes"),
            count(&r, "updated")
        ),
        ("succeeded", 0, 1),
        "{:?}",
        r.errors
    );
    assert_eq!(
        s.local("carol").await.keycloak.last_name.as_deref(),
        Some("NotYetStored")
    );
}

#[tokio::test]
async fn a_run_records_the_capacity_dynamodb_reported_and_its_keycloak_requests() {
    let s = setup(&[]).await;
    let r = run(&s.services, full()).await.unwrap();
    assert_eq!(status(&r), "succeeded", "{:?}", r.errors);
    assert!(
        r.cost.read_capacity_units > 0.0
            && r.cost.write_capacity_units > 0.0
            && r.cost.keycloak_requests > 0,
        "{:?}",
        r.cost
    );
    let stored = s.services.store.get_run(&r.run_id).await.unwrap().unwrap();
    assert_eq!(stored.cost, r.cost);
    // A resync writes no user: its write units are the run's own records only; one changed user
    // adds that user's write. (moto reports nothing for the first run's transactional creates.)
    let again = run(&s.services, full()).await.unwrap();
    let carol = s.id_of("carol").await;
    s.services
        .keycloak
        .update_user(
            &carol,
            &UserUpdate {
                last_name: Some("Changed".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let changed = run(&s.services, full()).await.unwrap();
    assert_eq!(changed.counts.updated, 1);
    assert!(
        again.cost.write_capacity_units < changed.cost.write_capacity_units,
        "{:?} vs {:?}",
        again.cost,
        changed.cost
    );
}

#[tokio::test]
async fn every_member_of_a_role_with_more_members_than_a_membership_page_has_its_roles() {
    // Every user holds the realm's default role (effective: `user`); 5 100 users are more than
    // one page of its members (5 000), so the second page must be read too.
    let s = setup(&[]).await;
    s.add_users("many", 5100).await;
    let r = run(&s.services, full()).await.unwrap();
    assert_eq!(status(&r), "succeeded", "{:?}", r.errors);
    let mut query = user_sync::outside::store::ListQuery {
        limit: 200,
        cursor: None,
        prefix: Some("many".into()),
        status: None,
    };
    let mut without_user_role = Vec::new();
    let mut listed = 0;
    loop {
        let page = s.services.store.list_users(&query).await.unwrap();
        listed += page.items.len();
        without_user_role.extend(
            page.items
                .iter()
                .filter(|u| !u.keycloak.roles.iter().any(|r| r == "user"))
                .map(|u| u.keycloak.username.clone()),
        );
        match page.next_cursor {
            Some(next) => query.cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(listed, 5100);
    assert!(without_user_role.is_empty(), "{without_user_role:?}");
}
