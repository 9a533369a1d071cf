//! The DynamoDB store against DynamoDB Local: conditional writes, listing, sessions, lease, runs, idempotency.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::common::table;
use user_sync::base::clock::EpochSecs;
use user_sync::outside::store::*;

fn fields(username: &str) -> KeycloakFields {
    KeycloakFields {
        username: username.into(),
        email: Some(format!("{username}@example.com")),
        first_name: Some("First".into()),
        last_name: Some("Last".into()),
        enabled: true,
        email_verified: true,
        roles: vec!["user".into()],
        groups: vec!["/support".into()],
    }
}

fn attrs(pairs: &[(&str, &str)]) -> Attributes {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn user(id: &str, username: &str) -> User {
    User::new(
        id,
        &fields(username),
        &attrs(&[("organization", "Acme")]),
        1_000,
    )
}

fn lock(owner: &str, until: i64) -> WriteLock {
    WriteLock {
        owner: owner.into(),
        until,
    }
}

/// An admin's soft delete, as the admin API writes it.
async fn soft_delete(store: &Store, id: &str, now: i64) -> User {
    let old = store.get_user(id).await.unwrap().unwrap();
    let deleted = User {
        status: UserStatus::Deleted,
        keycloak: KeycloakFields {
            enabled: false,
            ..old.keycloak.clone()
        },
        deleted_at: Some(now),
        deleted_reason: Some(DELETED_BY_ADMIN.into()),
        version: old.version + 1,
        ..old.clone()
    };
    let l = lock("admin", now + 30_000);
    store.begin_edit(&old, &deleted, &l, now).await.unwrap();
    store.finish_edit(id, &l).await.unwrap();
    deleted
}

fn session(user_id: &str, sid: &str, expires_at: i64) -> Session {
    let expires_at = EpochSecs(expires_at);
    Session {
        user_id: user_id.into(),
        sid: sid.into(),
        created_at: 1_000,
        refreshed_at: None,
        refresh_count: 0,
        ip: Some("10.0.0.1".into()),
        user_agent: Some("tests".into()),
        refresh_token_sha256: token_hash("refresh-1"),
        previous_refresh_token_sha256: None,
        expires_at,
        ended_at: None,
        end_reason: None,
        client_id: None,
        last_seen_at: None,
    }
}

#[tokio::test]
async fn a_user_is_created_once_and_read_back() {
    let store = table().await;
    let u = user("u1", "alice");
    store.create_user(&u).await.unwrap();
    assert_eq!(store.get_user("u1").await.unwrap(), Some(u.clone()));
    assert_eq!(
        store.create_user(&u).await.unwrap_err(),
        StoreError::AlreadyExists
    );
    assert_eq!(store.get_user("nobody").await.unwrap(), None);
}

#[tokio::test]
async fn keycloak_fields_create_update_and_skip_unchanged() {
    let store = table().await;
    let biz = attrs(&[("title", "Agent")]);
    assert_eq!(
        store
            .apply_keycloak_fields("u1", &fields("bob"), &biz, 100, 100)
            .await
            .unwrap(),
        ApplyOutcome::Created
    );
    let created = store.get_user("u1").await.unwrap().unwrap();
    assert_eq!(
        (
            created.version,
            created.attributes.get("title").map(String::as_str),
            created.login_count
        ),
        (1, Some("Agent"), 0)
    );
    assert_eq!(
        store
            .apply_keycloak_fields("u1", &fields("bob"), &biz, 200, 200)
            .await
            .unwrap(),
        ApplyOutcome::Unchanged
    );
    assert_eq!(
        store.get_user("u1").await.unwrap().unwrap(),
        created,
        "the same content writes nothing"
    );
    let mut changed = fields("bob");
    changed.last_name = Some("Newname".into());
    assert_eq!(
        store
            .apply_keycloak_fields("u1", &changed, &biz, 300, 300)
            .await
            .unwrap(),
        ApplyOutcome::Updated
    );
    let updated = store.get_user("u1").await.unwrap().unwrap();
    assert_eq!(
        (updated.keycloak.last_name.as_deref(), updated.version),
        (Some("Newname"), 2)
    );
    assert_eq!(updated.created_at, created.created_at);
}

#[tokio::test]
async fn an_older_observation_never_overwrites_a_newer_one() {
    let store = table().await;
    let biz = Attributes::new();
    let mut newer = fields("carl");
    newer.first_name = Some("Newer".into());
    store
        .apply_keycloak_fields("u1", &newer, &biz, 500, 500)
        .await
        .unwrap();
    let mut older = fields("carl");
    older.first_name = Some("Older".into());
    assert_eq!(
        store
            .apply_keycloak_fields("u1", &older, &biz, 400, 600)
            .await
            .unwrap(),
        ApplyOutcome::Skipped
    );
    assert_eq!(
        store
            .get_user("u1")
            .await
            .unwrap()
            .unwrap()
            .keycloak
            .first_name
            .as_deref(),
        Some("Newer")
    );
}

#[tokio::test]
async fn keycloak_fields_never_touch_business_attributes_of_an_existing_user() {
    let store = table().await;
    store.create_user(&user("u1", "dana")).await.unwrap();
    let mut changed = fields("dana");
    changed.enabled = false;
    let biz = attrs(&[("organization", "Other")]);
    store
        .apply_keycloak_fields("u1", &changed, &biz, 2_000, 2_000)
        .await
        .unwrap();
    let u = store.get_user("u1").await.unwrap().unwrap();
    assert_eq!(
        (
            u.attributes["organization"].as_str(),
            u.status,
            u.keycloak.enabled
        ),
        ("Acme", UserStatus::Disabled, false)
    );
}

#[tokio::test]
async fn an_edit_at_a_stale_version_fails_and_changes_nothing() {
    let store = table().await;
    let old = user("u1", "erin");
    store.create_user(&old).await.unwrap();
    let mut new = old.clone();
    new.attributes.insert("title".into(), "Lead".into());
    new.version = 2;
    let l = lock("a", 60_000);
    store.begin_edit(&old, &new, &l, 5_000).await.unwrap();
    let before = user_sync::base::clock::now_ms();
    store.finish_edit("u1", &l).await.unwrap();
    let finished = store.get_user("u1").await.unwrap().unwrap();
    assert!(
        finished.kc_observed_at >= before,
        "the edit is the newest observation"
    );
    assert_eq!(
        User {
            kc_observed_at: new.kc_observed_at,
            ..finished.clone()
        },
        new
    );
    let mut stale = old.clone();
    stale.attributes.insert("title".into(), "Intern".into());
    stale.version = 2;
    assert_eq!(
        store
            .begin_edit(&old, &stale, &lock("b", 60_000), 6_000)
            .await
            .unwrap_err(),
        StoreError::VersionConflict
    );
    assert_eq!(store.get_user("u1").await.unwrap().unwrap(), finished);
    let ghost = User {
        id: "ghost".into(),
        ..old.clone()
    };
    assert_eq!(
        store
            .begin_edit(&ghost, &ghost, &lock("c", 60_000), 6_000)
            .await
            .unwrap_err(),
        StoreError::NotFound
    );
}

#[tokio::test]
async fn a_record_with_a_write_in_flight_refuses_other_writers_until_the_lock_expires() {
    let store = table().await;
    let old = user("u1", "uma");
    store.create_user(&old).await.unwrap();
    let mut first = old.clone();
    first.keycloak.first_name = Some("One".into());
    first.version = 2;
    store
        .begin_edit(&old, &first, &lock("first", 10_000), 1_000)
        .await
        .unwrap();
    // The second writer holds the ETag of the first write, which is still in flight.
    let mut second = first.clone();
    second.keycloak.first_name = Some("Two".into());
    second.version = 3;
    assert_eq!(
        store
            .begin_edit(&first, &second, &lock("second", 20_000), 2_000)
            .await
            .unwrap_err(),
        StoreError::Locked
    );
    // The first writer died: once its lock has expired, the next writer takes over.
    store
        .begin_edit(&first, &second, &lock("second", 20_000), 11_000)
        .await
        .unwrap();
    assert_eq!(
        store
            .finish_edit("u1", &lock("first", 10_000))
            .await
            .unwrap_err(),
        StoreError::Locked,
        "a writer whose lock was taken over releases nothing"
    );
    store
        .finish_edit("u1", &lock("second", 20_000))
        .await
        .unwrap();
    let finished = store.get_user("u1").await.unwrap().unwrap();
    assert_eq!(
        User {
            kc_observed_at: second.kc_observed_at,
            ..finished
        },
        second
    );
}

#[tokio::test]
async fn a_keycloak_observation_never_lands_under_an_admin_write_lock_nor_before_its_finish() {
    let store = table().await;
    let old = user("u1", "lee");
    store.create_user(&old).await.unwrap();
    let mut edited = old.clone();
    edited.keycloak.last_name = Some("Edited".into());
    edited.version = 2;
    let l = lock("admin", i64::MAX);
    let now = user_sync::base::clock::now_ms();
    store.begin_edit(&old, &edited, &l, now).await.unwrap();
    // A read of Keycloak taken while the edit is in flight (still the old name).
    let stale = old.keycloak.clone();
    let read_at = user_sync::base::clock::now_ms();
    assert_eq!(
        store
            .apply_keycloak_fields("u1", &stale, &Attributes::new(), read_at, read_at)
            .await
            .unwrap_err(),
        StoreError::Locked
    );
    store.finish_edit("u1", &l).await.unwrap();
    // After the edit, the same stale read (asked before it finished) writes nothing.
    let outcome = store
        .apply_keycloak_fields("u1", &stale, &Attributes::new(), read_at, read_at)
        .await
        .unwrap();
    assert!(
        matches!(outcome, ApplyOutcome::Skipped | ApplyOutcome::Unchanged),
        "{outcome:?}"
    );
    let local = store.get_user("u1").await.unwrap().unwrap();
    assert_eq!(local.keycloak.last_name.as_deref(), Some("Edited"));
}

#[tokio::test]
async fn an_undone_edit_restores_the_fields_under_a_newer_version() {
    let store = table().await;
    let old = user("u1", "kim");
    store.create_user(&old).await.unwrap();
    let mut new = old.clone();
    new.attributes.insert("title".into(), "Boss".into());
    new.keycloak.email = None;
    new.version = 2;
    let l = lock("a", 60_000);
    store.begin_edit(&old, &new, &l, 1_000).await.unwrap();
    // A login meanwhile counts itself; the undo must not lose that.
    let login = LoginRecord {
        user_id: "u1".into(),
        fields: new.keycloak.clone(),
        attributes: Attributes::new(),
        at: 1_500,
    };
    store
        .record_login(&login, &session("u1", "s1", 9_999_999_999))
        .await
        .unwrap();
    store.undo_edit(&new, &old, &l).await.unwrap();
    let after = store.get_user("u1").await.unwrap().unwrap();
    assert_eq!(
        (after.keycloak.email.clone(), after.attributes.get("title")),
        (old.keycloak.email.clone(), None)
    );
    assert_eq!(after.login_count, 1, "the login's count survives the undo");
    assert_eq!(
        after.version, 4,
        "1 → 2 (edit) → 3 (login) → 4 (undo): never a version twice"
    );
    let item_version_1_again = store
        .begin_edit(&old, &old, &lock("b", 60_000), 2_000)
        .await;
    assert_eq!(
        item_version_1_again.unwrap_err(),
        StoreError::VersionConflict
    );
}

#[tokio::test]
async fn soft_delete_keeps_a_tombstone_that_keycloak_updates_leave_alone() {
    let store = table().await;
    store.create_user(&user("u1", "gus")).await.unwrap();
    let deleted = soft_delete(&store, "u1", 9_000).await;
    assert_eq!(
        (deleted.status, deleted.deleted_at, deleted.keycloak.enabled),
        (UserStatus::Deleted, Some(9_000), false)
    );
    let mut back = fields("gus");
    back.first_name = Some("Back".into());
    assert_eq!(
        store
            .apply_keycloak_fields("u1", &back, &Attributes::new(), 10_000, 10_000)
            .await
            .unwrap(),
        ApplyOutcome::Skipped
    );
    assert_eq!(
        store.get_user("u1").await.unwrap().unwrap().status,
        UserStatus::Deleted
    );
}

#[tokio::test]
async fn listing_pages_return_every_user_exactly_once() {
    let store = table().await;
    let names: Vec<String> = (0..45)
        .map(|i| format!("{}user{i:02}", ["a", "b", "c", "z", "9"][i % 5]))
        .collect();
    let users = names
        .iter()
        .enumerate()
        .map(|(i, n)| user(&format!("id{i}"), n))
        .collect();
    assert!(store
        .create_users_if_absent(users)
        .await
        .unwrap()
        .is_empty());
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_users(&ListQuery {
                limit: 10,
                cursor,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page.items.len() <= 10);
        seen.extend(page.items.into_iter().map(|u| u.keycloak.username));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 45);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 45);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "ordered by username");
}

#[tokio::test]
async fn prefix_search_by_username_or_email_and_status_filter() {
    let store = table().await;
    for (i, name) in ["anna", "anne", "bert", "annika"].iter().enumerate() {
        store
            .create_user(&user(&format!("id{i}"), name))
            .await
            .unwrap();
    }
    let by_name = store
        .list_users(&ListQuery {
            limit: 10,
            prefix: Some("ANN".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        by_name
            .items
            .iter()
            .map(|u| u.keycloak.username.as_str())
            .collect::<Vec<_>>(),
        ["anna", "anne", "annika"]
    );
    let by_email = store
        .list_users(&ListQuery {
            limit: 10,
            prefix: Some("bert@ex".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_email.items.len(), 1);
    soft_delete(&store, "id1", 5).await;
    let deleted = store
        .list_users(&ListQuery {
            limit: 10,
            status: Some(UserStatus::Deleted),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        deleted
            .items
            .iter()
            .map(|u| u.keycloak.username.as_str())
            .collect::<Vec<_>>(),
        ["anne"]
    );
}

#[tokio::test]
async fn a_tampered_or_foreign_cursor_is_invalid() {
    let store = table().await;
    for i in 0..3 {
        store
            .create_user(&user(&format!("id{i}"), &format!("amy{i}")))
            .await
            .unwrap();
    }
    let page = store
        .list_users(&ListQuery {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let cursor = page.next_cursor.unwrap();
    let (body, tag) = cursor.split_once('.').unwrap();
    let mut raw =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, body).unwrap();
    raw[5] ^= 1;
    let forged = format!(
        "{}.{tag}",
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &raw)
    );
    for bad in [forged.as_str(), "garbage", "a.b"] {
        let q = ListQuery {
            limit: 1,
            cursor: Some(bad.into()),
            ..Default::default()
        };
        assert_eq!(
            store.list_users(&q).await.unwrap_err(),
            StoreError::InvalidCursor
        );
    }
    let other_query = ListQuery {
        limit: 1,
        cursor: Some(cursor),
        prefix: Some("amy".into()),
        ..Default::default()
    };
    assert_eq!(
        store.list_users(&other_query).await.unwrap_err(),
        StoreError::InvalidCursor
    );
}

#[tokio::test]
async fn a_login_writes_the_user_and_the_session_in_one_transaction() {
    let store = table().await;
    let login = LoginRecord {
        user_id: "u1".into(),
        fields: fields("hana"),
        attributes: attrs(&[("department", "Ops")]),
        at: 7_000,
    };
    store
        .record_login(&login, &session("u1", "s1", 9_999_999_999))
        .await
        .unwrap();
    store
        .record_login(
            &LoginRecord {
                at: 8_000,
                ..login.clone()
            },
            &session("u1", "s2", 9_999_999_999),
        )
        .await
        .unwrap();
    let u = store.get_user("u1").await.unwrap().unwrap();
    assert_eq!(
        (u.login_count, u.last_login_at, u.created_at),
        (2, Some(8_000), 7_000)
    );
    assert_eq!(u.attributes["department"], "Ops");
    let sessions = store.list_sessions("u1").await.unwrap();
    assert_eq!(sessions.len(), 2);
    assert!(sessions
        .iter()
        .all(|s| s.refresh_token_sha256 == token_hash("refresh-1")));
}

#[tokio::test]
async fn a_login_of_a_locally_deleted_user_writes_nothing() {
    let store = table().await;
    store.create_user(&user("u1", "ivy")).await.unwrap();
    soft_delete(&store, "u1", 5).await;
    let login = LoginRecord {
        user_id: "u1".into(),
        fields: fields("ivy"),
        attributes: Attributes::new(),
        at: 6,
    };
    assert!(store
        .record_login(&login, &session("u1", "s1", 9_999_999_999))
        .await
        .is_err());
    assert!(
        store.list_sessions("u1").await.unwrap().is_empty(),
        "no session without its user"
    );
}

#[tokio::test]
async fn sessions_refresh_and_end_once() {
    let store = table().await;
    store
        .put_session(&session("u1", "s1", 5_000))
        .await
        .unwrap();
    let s = store
        .record_refresh(
            "u1",
            "s1",
            &token_hash("refresh-1"),
            "refresh-2",
            EpochSecs(6_000),
            4_000,
        )
        .await
        .unwrap();
    assert_eq!(
        (
            s.refresh_count,
            s.expires_at,
            s.refresh_token_sha256.clone(),
            s.previous_refresh_token_sha256.clone()
        ),
        (
            1,
            EpochSecs(6_000),
            token_hash("refresh-2"),
            Some(token_hash("refresh-1"))
        )
    );
    assert_eq!(
        store
            .record_refresh(
                "u1",
                "s1",
                &token_hash("refresh-1"),
                "refresh-x",
                EpochSecs(6_000),
                4_100
            )
            .await
            .unwrap_err(),
        StoreError::VersionConflict,
        "only the current token rotates the session"
    );
    assert!(store
        .end_session("u1", "s1", SessionEnd::Logout, 4_500)
        .await
        .unwrap());
    assert!(
        !store
            .end_session("u1", "s1", SessionEnd::Logout, 4_600)
            .await
            .unwrap(),
        "second end writes nothing"
    );
    let ended = store.get_session("u1", "s1").await.unwrap().unwrap();
    assert_eq!(
        (ended.ended_at, ended.end_reason),
        (Some(4_500), Some(SessionEnd::Logout))
    );
    assert_eq!(
        store
            .record_refresh(
                "u1",
                "s1",
                &token_hash("refresh-2"),
                "refresh-3",
                EpochSecs(7_000),
                5_000
            )
            .await
            .unwrap_err(),
        StoreError::VersionConflict,
        "an ended session never comes back"
    );
    assert_eq!(
        store
            .record_refresh("u1", "nope", "x", "y", EpochSecs(7_000), 5_000)
            .await
            .unwrap_err(),
        StoreError::NotFound
    );
}

#[tokio::test]
async fn ending_all_sessions_of_a_user() {
    let store = table().await;
    for sid in ["a", "b", "c"] {
        store.put_session(&session("u1", sid, 9_000)).await.unwrap();
    }
    store
        .end_session("u1", "a", SessionEnd::Logout, 1)
        .await
        .unwrap();
    assert_eq!(
        store
            .end_all_sessions("u1", SessionEnd::UserDeactivated, 2)
            .await
            .unwrap(),
        2
    );
    assert!(store
        .list_sessions("u1")
        .await
        .unwrap()
        .iter()
        .all(|s| s.ended_at.is_some()));
}

#[tokio::test]
async fn one_sync_lease_at_a_time_until_it_expires() {
    let store = table().await;
    assert!(store.acquire_lease("run-a", 10_000, 1_000).await.unwrap());
    assert!(!store.acquire_lease("run-b", 20_000, 2_000).await.unwrap());
    store.release_lease("run-b").await.unwrap(); // not the owner: no effect
    assert!(!store.acquire_lease("run-b", 20_000, 3_000).await.unwrap());
    assert!(
        store.acquire_lease("run-b", 30_000, 11_000).await.unwrap(),
        "an expired lease is taken over"
    );
    store.release_lease("run-b").await.unwrap();
    assert!(store.acquire_lease("run-c", 40_000, 12_000).await.unwrap());
}

#[tokio::test]
async fn sync_state_and_runs_are_kept() {
    let store = table().await;
    assert_eq!(store.sync_state().await.unwrap(), SyncState::default());
    let state = SyncState {
        last_success_at: Some(5),
        event_cursor_ms: Some(6),
        ..Default::default()
    };
    store.put_sync_state(&state).await.unwrap();
    assert_eq!(store.sync_state().await.unwrap(), state);
    for started in [100, 300, 200] {
        let run = SyncRun {
            run_id: SyncRun::new_id(started),
            mode: SyncMode::Full,
            escalated: false,
            status: SyncStatus::Succeeded,
            started_at: started,
            finished_at: Some(started + 1),
            counts: SyncCounts {
                seen: 3,
                ..Default::default()
            },
            plan: None,
            errors: vec![],
            cost: Default::default(),
            keycloak_clock_skew_ms: Some(-120_000),
            expires_at: EpochSecs(9_999_999_999),
        };
        store.put_run(&run).await.unwrap();
        assert_eq!(store.get_run(&run.run_id).await.unwrap(), Some(run));
    }
    let recent = store.recent_runs(2).await.unwrap();
    assert_eq!(
        recent.iter().map(|r| r.started_at).collect::<Vec<_>>(),
        [300, 200]
    );
}

#[tokio::test]
async fn idempotency_claims_replay_and_mismatch() {
    let store = table().await;
    assert_eq!(
        store
            .claim_idempotency("key-1", "body-a", EpochSecs(9_999_999_999), 60_000, 1_000)
            .await
            .unwrap(),
        Claim::New
    );
    assert_eq!(
        store
            .claim_idempotency("key-1", "body-a", EpochSecs(9_999_999_999), 60_000, 1_000)
            .await
            .unwrap(),
        Claim::InProgress
    );
    assert_eq!(
        store
            .claim_idempotency("key-1", "body-b", EpochSecs(9_999_999_999), 60_000, 1_000)
            .await
            .unwrap(),
        Claim::Mismatch
    );
    store
        .complete_idempotency("key-1", "u1", EpochSecs(9_999_999_999))
        .await
        .unwrap();
    assert_eq!(
        store
            .claim_idempotency("key-1", "body-a", EpochSecs(9_999_999_999), 60_000, 1_000)
            .await
            .unwrap(),
        Claim::Completed {
            user_id: "u1".into()
        }
    );
    assert_eq!(
        store
            .claim_idempotency("key-2", "body-a", EpochSecs(9_999_999_999), 60_000, 1_000)
            .await
            .unwrap(),
        Claim::New
    );
    store.release_idempotency("key-2", false).await.unwrap();
    assert_eq!(
        store
            .claim_idempotency("key-2", "body-a", EpochSecs(9_999_999_999), 60_000, 1_000)
            .await
            .unwrap(),
        Claim::New
    );
}

#[tokio::test]
async fn erasing_a_person_deletes_their_sessions_and_strips_their_registrations_record() {
    let store = table().await;
    let user = user("erased-1", "erin");
    store.create_user(&user).await.unwrap();
    store
        .put_session(&session("erased-1", "s1", 1_000))
        .await
        .unwrap();
    store
        .claim_idempotency(
            "key-e",
            "hash-of-erin",
            EpochSecs(9_999_999_999),
            60_000,
            1_000,
        )
        .await
        .unwrap();
    store
        .complete_idempotency("key-e", "erased-1", EpochSecs(9_999_999_999))
        .await
        .unwrap();
    let erased = store.erase_personal_data("erased-1", "erin").await.unwrap();
    assert_eq!((erased.sessions, erased.idempotency_records), (1, 1));
    assert!(store.list_sessions("erased-1").await.unwrap().is_empty());
    assert_eq!(
        store
            .claim_idempotency(
                "key-e",
                "hash-of-erin",
                EpochSecs(9_999_999_999),
                60_000,
                1_000
            )
            .await
            .unwrap(),
        Claim::Erased,
        "a replay of the key is refused, and nothing is claimed again"
    );
    assert!(
        store.get_user("erased-1").await.unwrap().is_some(),
        "the profile is the caller's to turn into a tombstone"
    );
}

#[tokio::test]
async fn a_claim_whose_invocation_died_is_taken_over_by_a_retry() {
    let store = table().await;
    let claim = |hash: &'static str, now: i64| {
        let store = store.clone();
        async move {
            store
                .claim_idempotency("key-9", hash, EpochSecs(9_999_999_999), now + 15_000, now)
                .await
                .unwrap()
        }
    };
    assert_eq!(claim("body-a", 1_000).await, Claim::New);
    assert_eq!(
        claim("body-a", 10_000).await,
        Claim::InProgress,
        "its invocation may be alive"
    );
    assert_eq!(
        claim("body-b", 20_000).await,
        Claim::Mismatch,
        "never for another request"
    );
    assert_eq!(
        claim("body-a", 20_000).await,
        Claim::Resumed { since: 1_000 },
        "dead: the retry runs it again, knowing when the first attempt began"
    );
}

#[tokio::test]
async fn a_claim_released_after_an_unknown_outcome_resumes_and_one_after_a_refusal_starts_afresh() {
    let store = table().await;
    let claim = |key: &'static str, now: i64| {
        let store = store.clone();
        async move {
            store
                .claim_idempotency(key, "body-a", EpochSecs(9_999_999_999), now + 15_000, now)
                .await
                .unwrap()
        }
    };
    assert_eq!(claim("key-u", 1_000).await, Claim::New);
    store.release_idempotency("key-u", true).await.unwrap();
    assert_eq!(claim("key-u", 2_000).await, Claim::Resumed { since: 1_000 });
    store.release_idempotency("key-u", true).await.unwrap();
    assert_eq!(
        claim("key-u", 3_000).await,
        Claim::Resumed { since: 1_000 },
        "the first attempt's start survives"
    );
    assert_eq!(claim("key-r", 1_000).await, Claim::New);
    store.release_idempotency("key-r", false).await.unwrap();
    assert_eq!(claim("key-r", 2_000).await, Claim::New);
}

#[tokio::test]
async fn the_sync_digest_holds_every_user_and_nothing_else() {
    let store = table().await;
    let users: Vec<_> = (0..120)
        .map(|i| user(&format!("id{i}"), &format!("user{i:03}")))
        .collect();
    let hash = users[7].keycloak.clone().content_key();
    assert!(store
        .create_users_if_absent(users)
        .await
        .unwrap()
        .is_empty());
    store
        .put_session(&session("id1", "s1", 9_000))
        .await
        .unwrap();
    store.mark_missing("id3", 10_000).await.unwrap();
    let mut digest = user_sync::base::ids::IdMap::<Option<Digest>>::default();
    store
        .scan_digest(120, |id, d| *digest.entry(id) = Some(d))
        .await
        .unwrap();
    // Sized for a million users (200 segments, 4 at a time): the same users, each once.
    let mut counted = user_sync::base::ids::IdMap::<u32>::default();
    store
        .scan_digest(1_000_000, |id, _| *counted.entry(id) += 1)
        .await
        .unwrap();
    assert_eq!(counted.len(), 120);
    assert!(counted.values().all(|n| *n == 1), "no user read twice");
    let digest_of = |id: &str| digest.get(id).copied().flatten().unwrap();
    assert_eq!(digest.len(), 120, "sessions are not users");
    assert_eq!(digest_of("id7").hash, hash);
    assert_eq!(digest_of("id7").state, StoredState::Active);
    assert_eq!(digest_of("id3").state, StoredState::Missing);
}

#[tokio::test]
async fn creating_users_if_absent_never_overwrites_a_record_and_hands_back_only_the_refused_one() {
    let store = table().await;
    let mut existing = user("id1", "user001");
    existing.attributes.insert("plan".into(), "gold".into());
    store.create_user(&existing).await.unwrap();
    let batch = vec![user("id0", "user000"), user("id1", "other-name")];
    let refused = store.create_users_if_absent(batch).await.unwrap();
    assert_eq!(
        refused.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
        ["id1"],
        "each user is its own conditional put: only the one with a record comes back"
    );
    let kept = store.get_user("id1").await.unwrap().unwrap();
    assert_eq!(kept.keycloak.username, "user001");
    assert_eq!(kept.attributes["plan"], "gold");
    assert_eq!(
        store
            .get_user("id0")
            .await
            .unwrap()
            .unwrap()
            .keycloak
            .username,
        "user000"
    );
}

#[tokio::test]
async fn dynamodb_down_is_unavailable() {
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .endpoint_url("http://127.0.0.1:9")
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "l", "l", None, None, "t",
            ))
            .build(),
    );
    let store = Store::new(client, "t", b"k");
    assert!(matches!(
        store.get_user("x").await.unwrap_err(),
        StoreError::Unavailable(_)
    ));
}

#[tokio::test]
async fn a_user_marked_missing_is_reactivated_by_a_newer_observation() {
    let store = table().await;
    store.create_user(&user("u1", "lee")).await.unwrap();
    assert!(store.mark_missing("u1", 5_000).await.unwrap());
    assert!(!store.mark_missing("u1", 5_001).await.unwrap(), "once");
    let outcome = store
        .apply_keycloak_fields("u1", &fields("lee"), &Attributes::new(), 6_000, 6_000)
        .await
        .unwrap();
    assert_eq!(outcome, ApplyOutcome::Reactivated);
    let back = store.get_user("u1").await.unwrap().unwrap();
    assert_eq!(
        (back.status, back.deleted_at, back.deleted_reason),
        (UserStatus::Active, None, None)
    );
}

#[tokio::test]
async fn a_registration_is_in_flight_from_its_start_until_it_ends_or_lapses() {
    let store = table().await;
    assert!(!store.is_registering("Ada", 1_000, None).await.unwrap());
    store.begin_registering("ada", "a-1", 10_000).await.unwrap();
    assert!(
        store.is_registering("ADA", 1_000, None).await.unwrap(),
        "the name as Keycloak compares it"
    );
    assert!(
        !store
            .is_registering("ada", 1_000, Some("a-1"))
            .await
            .unwrap(),
        "an attempt does not count itself"
    );
    assert!(
        !store.is_registering("ada", 10_000, None).await.unwrap(),
        "lapsed at its deadline"
    );
    store.end_registering("ada", "a-other").await.unwrap();
    assert!(
        store.is_registering("ada", 1_000, None).await.unwrap(),
        "another attempt's end leaves it"
    );
    store.end_registering("ada", "a-1").await.unwrap();
    assert!(!store.is_registering("ada", 1_000, None).await.unwrap());
}

#[tokio::test]
async fn a_registration_whose_deadline_cannot_be_read_counts_as_in_flight() {
    let store = table().await;
    store
        .begin_registering("grace", "g-1", 10_000)
        .await
        .unwrap();
    let pk = format!("REGISTERING#{}", token_hash("grace"));
    crate::common::dynamodb()
        .update_item()
        .table_name(store.table_name())
        .key("pk", AttributeValue::S(pk))
        .key("sk", AttributeValue::S("ATTEMPT".into()))
        .update_expression("SET #u = :garbled")
        .expression_attribute_names("#u", "until")
        .expression_attribute_values(":garbled", AttributeValue::S("soon".into()))
        .send()
        .await
        .unwrap();
    assert!(store.is_registering("grace", 1_000, None).await.unwrap());
}
