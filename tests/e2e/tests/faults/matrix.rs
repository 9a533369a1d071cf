//! The fault matrix: for each flow and each of its Keycloak steps, one fault — a 5xx before
//! handling, a 429 with `Retry-After`, or an answer lost after Keycloak did the work — and what a
//! user checks afterwards (and one DynamoDB fault: a conditional write that fails because a
//! login of the user landed between the route's read and its write): the answer said what happened, Keycloak and the store agree (or a
//! repair is recorded and the next sync run completes it), no orphan on either side, and no
//! session live here that Keycloak or the change ended. One row per case; the README's "Fault
//! matrix" table is this table.
//!
//! The table is one spec: its rows run side by side (at most `SIDE_BY_SIDE`), each with a fault
//! rule that names its own user or registration; the rows whose step cannot be narrowed so (the
//! role read of a user not created yet, the end-session endpoint) run one at a time after them.
//! The whole table holds the binary's lock: no DynamoDB pause or clock move runs meanwhile. Rows
//! marked `loaded` run alone with every core kept busy: the timing cases (an answer lost, a
//! hanging read) must hold on a loaded host too.

use e2e::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

use super::ONE_AT_A_TIME;

#[derive(Clone, Copy, Debug)]
enum Flow {
    Register,
    /// An admin's `POST /admin/users` (no idempotency key: the retry is a new request).
    AdminCreate,
    Disable,
    SoftDelete,
    HardDelete,
    /// The user's own logout (`POST /auth/logout` with their refresh token).
    UserLogout,
    PasswordReset,
    AdminLogout,
    Patch,
}

#[derive(Clone, Copy, Debug)]
enum Step {
    CreateUser,
    RoleRead,
    /// An admin's logout of the user (`POST /users/{id}/logout`).
    Logout,
    UpdateUser,
    DeleteUser,
    /// The end-session endpoint (a refresh token's logout).
    EndSession,
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Keycloak answers 500 without handling the request.
    ServerError,
    /// Keycloak answers 429 with `Retry-After: 1` without handling the request, once.
    RateLimited,
    /// Keycloak handles the request and its answer is lost (the caller times out), once.
    AnswerLost,
    /// Keycloak handles every such request and loses every answer: the caller's retries too.
    AnswersLost,
    /// Keycloak never handles the request: the caller times out (`HANG_MS`, then a 504).
    TimesOutBeforeHandling,
    /// Keycloak handles the request only after `HANG_MS`, past the function's deadline (as a
    /// Keycloak stalled on its database does); the caller has long given up by then.
    Hangs,
    /// DynamoDB's conditional write fails: the step is slowed by `RACE_MS` (once), and meanwhile
    /// a login of the user writes its record, so the version the route read is stale.
    StoreWriteRaced,
}

/// How long the raced step is slowed while the login lands.
const RACE_MS: u64 = 2_500;

/// How long a hanging Keycloak takes to handle a request.
const HANG_MS: u64 = 25_000;

/// What the API answers.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Answer {
    /// Done, nothing pending.
    Done,
    /// Done; the user shows this as pending until the next sync run completes it.
    DonePending(&'static str),
    /// Not done, nothing changed: `503` with `Retry-After`.
    NotDone,
    /// Refused, nothing changed: this status and problem code.
    Refused(u16, &'static str),
    /// Keycloak did not confirm it: `202`, held (locked) with this pending until the next sync
    /// run reads Keycloak back.
    Held(&'static str),
}

#[derive(Clone, Copy, Debug)]
struct Row {
    flow: Flow,
    step: Step,
    fault: Fault,
    answer: Answer,
    /// Run with every core kept busy (`Load`), as under other suites or a loaded host.
    loaded: bool,
}

/// Whether a row's optional `loaded` mark is there.
const fn marked(mark: &[&str]) -> bool {
    !mark.is_empty()
}

/// A spinning thread per core until dropped: the machine as busy as a loaded host.
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start() -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..cores)
            .map(|_| {
                let stop = std::sync::Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                    }
                })
            })
            .collect();
        Load { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Row {
    /// Whether the step's fault rule can name its own user or registration, so that rows run
    /// side by side. The role read of a user not created yet and the end-session endpoint
    /// cannot be narrowed: those rows run alone.
    fn narrowed(&self) -> bool {
        let creates = matches!(self.flow, Flow::Register | Flow::AdminCreate);
        !matches!(
            (self.step, creates),
            (Step::RoleRead, true) | (Step::EndSession, _)
        )
    }
}

macro_rules! matrix {
    ($($name:ident: $flow:ident, $step:ident, $fault:ident => $answer:expr $(, $loaded:ident)?;)*) => {
        const ROWS: &[(&str, Row)] = &[
            $((stringify!($name), Row {
                flow: Flow::$flow, step: Step::$step, fault: Fault::$fault, answer: $answer,
                loaded: marked(&[$(stringify!($loaded))?]),
            }),)*
        ];
    };
}

/// Rows running side by side at most (the stack has two cores).
const SIDE_BY_SIDE: usize = 6;

/// Every row of the table; each failing row is named with what it saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_fault_matrix_holds_row_by_row() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (together, alone): (Vec<_>, Vec<_>) =
        ROWS.iter().partition(|(_, r)| r.narrowed() && !r.loaded);
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(SIDE_BY_SIDE));
    let mut tasks = Vec::new();
    for &(name, row) in together {
        let slots = std::sync::Arc::clone(&slots);
        tasks.push((
            name,
            tokio::spawn(async move {
                let _slot = slots.acquire().await.unwrap();
                run(row).await
            }),
        ));
    }
    let mut failures = Vec::new();
    for (name, task) in tasks {
        if let Err(e) = task.await {
            failures.push(format!("{name}: {}", panic_text(e)));
        }
    }
    for &(name, row) in alone {
        if let Err(e) = tokio::spawn(run(row)).await {
            failures.push(format!("{name}: {}", panic_text(e)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        ROWS.len(),
        failures.join("\n")
    );
}

fn panic_text(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default(),
        Err(e) => e.to_string(),
    }
}

matrix! {
    register_create_5xx: Register, CreateUser, ServerError => Answer::NotDone;
    register_create_429: Register, CreateUser, RateLimited => Answer::Done;
    register_create_answer_lost: Register, CreateUser, AnswerLost => Answer::NotDone;
    register_role_read_5xx: Register, RoleRead, ServerError => Answer::DonePending("keycloak_read");
    register_role_read_hangs: Register, RoleRead, Hangs => Answer::DonePending("keycloak_read");
    disable_logout_5xx: Disable, Logout, ServerError => Answer::DonePending("keycloak_logout");
    disable_logout_answer_lost: Disable, Logout, AnswerLost => Answer::Done;
    soft_delete_logout_5xx: SoftDelete, Logout, ServerError => Answer::Done;
    password_reset_logout_5xx: PasswordReset, Logout, ServerError => Answer::Done;
    admin_logout_logout_5xx: AdminLogout, Logout, ServerError => Answer::Done;
    patch_update_5xx: Patch, UpdateUser, ServerError => Answer::Held("keycloak_write");
    patch_update_answer_lost: Patch, UpdateUser, AnswerLost => Answer::Done;
    patch_update_answers_lost_past_the_deadline: Patch, UpdateUser, AnswersLost => Answer::Done;
    patch_update_hangs_past_the_deadline: Patch, UpdateUser, Hangs => Answer::Held("keycloak_write");
    register_create_hangs_past_the_deadline: Register, CreateUser, Hangs => Answer::NotDone;
    register_create_times_out_before_handling: Register, CreateUser, TimesOutBeforeHandling => Answer::NotDone;
    admin_create_create_5xx: AdminCreate, CreateUser, ServerError => Answer::NotDone;
    admin_create_create_answer_lost: AdminCreate, CreateUser, AnswerLost => Answer::NotDone;
    admin_create_role_read_5xx: AdminCreate, RoleRead, ServerError => Answer::DonePending("keycloak_read");
    disable_update_429: Disable, UpdateUser, RateLimited => Answer::Done;
    disable_logout_429: Disable, Logout, RateLimited => Answer::Done;
    soft_delete_disable_5xx: SoftDelete, UpdateUser, ServerError => Answer::NotDone;
    soft_delete_disable_answers_lost: SoftDelete, UpdateUser, AnswersLost => Answer::Done;
    hard_delete_answers_lost: HardDelete, DeleteUser, AnswersLost => Answer::Done;
    hard_delete_5xx: HardDelete, DeleteUser, ServerError => Answer::NotDone;
    user_logout_5xx: UserLogout, EndSession, ServerError => Answer::Done;
    user_logout_answers_lost: UserLogout, EndSession, AnswersLost => Answer::Done;
    admin_logout_429: AdminLogout, Logout, RateLimited => Answer::Done;
    register_create_answer_lost_under_load: Register, CreateUser, AnswerLost => Answer::NotDone, loaded;
    register_role_read_hangs_under_load: Register, RoleRead, Hangs => Answer::DonePending("keycloak_read"), loaded;
    patch_store_write_raced: Patch, RoleRead, StoreWriteRaced => Answer::Refused(412, "precondition_failed");
    disable_store_write_raced: Disable, RoleRead, StoreWriteRaced => Answer::Refused(412, "precondition_failed");
    soft_delete_store_write_raced: SoftDelete, RoleRead, StoreWriteRaced => Answer::Done;
    hard_delete_store_write_raced: HardDelete, RoleRead, StoreWriteRaced => Answer::Done;
}

/// The fault rule for `step` of the user `id` (or the registration of `username`).
fn rule(step: Step, fault: Fault, id: &str, username: &str) -> Value {
    let (method, path, body) = match step {
        Step::CreateUser => (
            "POST",
            "/admin/realms/{realm}/users".to_owned(),
            Some(format!("\"username\":\"{username}\"")),
        ),
        Step::RoleRead => (
            "GET",
            format!(
                "/admin/realms/{{realm}}/users/{}/role-mappings/realm/composite",
                if id.is_empty() { "*" } else { id }
            ),
            None,
        ),
        Step::Logout => (
            "POST",
            format!("/admin/realms/{{realm}}/users/{id}/logout"),
            None,
        ),
        Step::UpdateUser => ("PUT", format!("/admin/realms/{{realm}}/users/{id}"), None),
        Step::DeleteUser => (
            "DELETE",
            format!("/admin/realms/{{realm}}/users/{id}"),
            None,
        ),
        Step::EndSession => (
            "POST",
            "/realms/{realm}/protocol/openid-connect/logout".to_owned(),
            None,
        ),
    };
    let mut rule = json!({"method": method, "path": path});
    if let Some(b) = body {
        rule["bodyContains"] = json!(b);
    }
    let extra = match fault {
        Fault::ServerError => json!({"status": 500}),
        Fault::RateLimited => json!({"status": 429, "retryAfter": 1, "times": 1}),
        Fault::AnswerLost => json!({"after": true, "drop": true, "times": 1}),
        Fault::AnswersLost => json!({"after": true, "drop": true}),
        Fault::Hangs => json!({"latencyMs": HANG_MS}),
        Fault::TimesOutBeforeHandling => json!({"status": 504, "latencyMs": HANG_MS}),
        Fault::StoreWriteRaced => json!({"latencyMs": RACE_MS, "times": 1}),
    };
    for (k, v) in extra.as_object().unwrap() {
        rule[k] = v.clone();
    }
    rule
}

async fn run(row: Row) {
    let _load = row.loaded.then(Load::start);
    match row.flow {
        Flow::Register | Flow::AdminCreate => register(&row).await,
        _ => change(&row).await,
    }
}

fn assert_answer(row: &Row, r: &Resp, done_status: u16) {
    let context = format!(
        "{:?} × {:?} × {:?}: {}",
        row.flow, row.step, row.fault, r.text
    );
    match row.answer {
        Answer::NotDone => {
            assert_eq!(r.status, 503, "{context}");
            assert!(r.header("retry-after").is_some(), "{context}");
        }
        Answer::Refused(status, code) => {
            assert_eq!(r.status, status, "{context}");
            assert_eq!(r.body["code"], json!(code), "{context}");
        }
        Answer::Done | Answer::DonePending(_) => assert_eq!(r.status, done_status, "{context}"),
        Answer::Held(p) => {
            assert_eq!(r.status, 202, "{context}");
            assert_eq!(r.body["pending"], json!([p]), "{context}");
        }
    }
}

async fn register(row: &Row) {
    let username = unique("fm-reg");
    let key = unique("fm-key");
    let started = Instant::now();
    let rule_id = fault(rule(row.step, row.fault, "", &username)).await;
    let first = create(row.flow, &username, &key).await;
    clear_fault(&rule_id).await;
    assert_answer(row, &first, 201);
    if let Answer::DonePending(p) = row.answer {
        assert_eq!(first.body["user"]["pending"], json!([p]), "{}", first.text);
    }
    // A retry (with the same key) ends with the account registered once, on both sides.
    let retry = match (row.flow, first.status) {
        (Flow::AdminCreate, 201) => first.clone(),
        _ => create(row.flow, &username, &key).await,
    };
    assert_eq!(retry.status, 201, "the retry: {}", retry.text);
    let id = retry.body["user"]["id"].as_str().unwrap().to_owned();
    if first.status == 201 {
        assert_eq!(first.body["user"]["id"], retry.body["user"]["id"]);
    }
    // Whatever create Keycloak still had in hand has landed (or been refused) by now.
    if let Step::CreateUser = row.step {
        landed(row.fault, started).await;
    }
    run_sync("incremental").await;
    let in_keycloak = keycloak_users_named(&username).await;
    assert_eq!(in_keycloak.len(), 1, "one Keycloak user: {in_keycloak:?}");
    assert_eq!(in_keycloak[0]["id"], json!(id));
    let local = local_user(&id).await.expect("its local record");
    let (_, roles) = keycloak_admin(
        Method::GET,
        &format!("/users/{id}/role-mappings/realm/composite"),
        None,
    )
    .await;
    let mut keycloak_roles: Vec<String> = roles
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .filter(|r| !user_sync::features::observe::is_technical_role(r))
        .map(str::to_owned)
        .collect();
    keycloak_roles.sort();
    assert_eq!(
        local.keycloak.roles, keycloak_roles,
        "the store's roles are Keycloak's"
    );
    assert!(local.pending().is_empty(), "{:?}", local.pending());
    assert!(!token_of(&username, "a-good-password").await.is_empty());
}

/// Wait until a request a hanging Keycloak still had in hand has been handled.
async fn landed(fault: Fault, started: Instant) {
    if let Fault::Hangs = fault {
        // The first request, and the client's retry after its 10 s timeout.
        let by = Duration::from_millis(HANG_MS + 12_000);
        tokio::time::sleep(by.saturating_sub(started.elapsed())).await;
    }
}

/// A registration with an idempotency key, or an admin's creation.
async fn create(flow: Flow, username: &str, key: &str) -> Resp {
    match flow {
        Flow::AdminCreate => {
            call(
                Method::POST,
                "/admin/users",
                Some(&admin().await),
                Some(new_user(username)),
            )
            .await
        }
        _ => register_with_key(username, key).await,
    }
}

async fn register_with_key(username: &str, key: &str) -> Resp {
    let r = http()
        .post(format!("{}/auth/register", stack().gateway))
        .header("idempotency-key", key)
        .json(&registration(username))
        .send()
        .await
        .unwrap();
    read(r).await
}

/// An admin's change to a signed-in user, with one Keycloak step failing.
async fn change(row: &Row) {
    let alice = admin().await;
    let (username, login) = signed_in_user("fm-user").await;
    let id = login["user"]["id"].as_str().unwrap().to_owned();
    let access = login["tokens"]["accessToken"].as_str().unwrap().to_owned();
    let etag = get_user(&alice, &id).await.header("etag").unwrap();
    let started = Instant::now();
    let rule_id = fault(rule(row.step, row.fault, &id, &username)).await;
    let request = tokio::spawn(admin_change(
        row.flow,
        alice.clone(),
        id.clone(),
        etag,
        login.clone(),
    ));
    if let Fault::StoreWriteRaced = row.fault {
        // While the route waits on Keycloak, a login of the user writes its record.
        tokio::time::sleep(Duration::from_millis(RACE_MS / 3)).await;
        token_of(&username, "a-good-password").await;
    }
    let (r, done_status) = request.await.unwrap();
    clear_fault(&rule_id).await;
    assert_answer(row, &r, done_status);
    if let Answer::DonePending(p) = row.answer {
        assert_eq!(r.body["pending"], json!([p]), "{}", r.text);
    }
    // A held change is applied if Keycloak did handle the write (late), not if it failed first.
    let done = match row.answer {
        Answer::Done | Answer::DonePending(_) => true,
        Answer::NotDone | Answer::Refused(..) => false,
        Answer::Held(_) => !matches!(row.fault, Fault::ServerError),
    };
    let ends_sessions = !matches!(row.flow, Flow::Patch);
    // The change's sessions end here at once, whatever Keycloak still has to do.
    let me = call(Method::GET, "/auth/me", Some(&access), None).await;
    let session_live = me.status == 200;
    assert_eq!(
        session_live,
        !(done && ends_sessions),
        "the session is live here: {}",
        me.text
    );
    if let Answer::Held(_) = row.answer {
        // Held: no other edit is acknowledged until Keycloak is read back.
        let etag = r.header("etag").unwrap();
        let other = patch(&alice, &id, Some(&etag), json!({"firstName": "Other"})).await;
        assert_eq!(
            (other.status, other.body["code"].as_str()),
            (409, Some("write_in_progress")),
            "{}",
            other.text
        );
        // The late write lands, and the read-back waits until it could have.
        landed(row.fault, started).await;
        // Counted from when the edit is pending (on a loaded host the route may have begun it
        // well after this test sent it).
        let since = local_user(&id)
            .await
            .unwrap()
            .pending_keycloak_write
            .expect("the held edit is pending");
        let due = since + user_sync::features::repair::EDIT_SETTLE_MS + 1_000;
        let wait = (due - user_sync::base::clock::now_ms()).max(0) as u64;
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
    // The next sync run completes what is pending; then both sides agree.
    let run = run_sync("incremental").await;
    let (status, kc) = keycloak_admin(Method::GET, &format!("/users/{id}"), None).await;
    let local = local_user(&id).await.unwrap();
    if let (Fault::StoreWriteRaced, false) = (row.fault, done) {
        assert_eq!(local.login_count, 2, "the racing login is kept");
    }
    if let (Flow::HardDelete, true) = (row.flow, done) {
        assert_eq!(status, 404, "gone from Keycloak: {kc}");
        assert_eq!(local.keycloak.username, "", "a tombstone here");
        return;
    }
    assert_eq!(status, 200, "{kc}");
    assert_eq!(
        local.keycloak.enabled,
        kc["enabled"].as_bool().unwrap(),
        "enabled"
    );
    assert_eq!(
        local.keycloak.last_name.as_deref(),
        kc["lastName"].as_str(),
        "lastName"
    );
    match (row.flow, done) {
        (Flow::Disable | Flow::SoftDelete, true) => assert!(!local.keycloak.enabled),
        (Flow::Patch, true) => assert_eq!(local.keycloak.last_name.as_deref(), Some("Changed")),
        (Flow::Patch, false) => assert_eq!(local.keycloak.last_name.as_deref(), Some("User")),
        (Flow::SoftDelete | Flow::HardDelete, false) => assert_eq!(
            (local.status, local.keycloak.enabled),
            (user_sync::outside::store::UserStatus::Active, true)
        ),
        _ => {}
    }
    assert!(
        local.pending().is_empty(),
        "{:?} after {run}",
        local.pending()
    );
    if done && ends_sessions {
        let (_, sessions) =
            keycloak_admin(Method::GET, &format!("/users/{id}/sessions"), None).await;
        assert_eq!(sessions, json!([]), "Keycloak's sessions ended too");
    }
}

/// The admin's (or the user's own) request of a change flow, and the status that means done.
async fn admin_change(
    flow: Flow,
    alice: String,
    id: String,
    etag: String,
    login: Value,
) -> (Resp, u16) {
    let path = format!("/admin/users/{id}");
    match flow {
        Flow::Disable => (
            patch(&alice, &id, Some(&etag), json!({"enabled": false})).await,
            200,
        ),
        Flow::Patch => (
            patch(&alice, &id, Some(&etag), json!({"lastName": "Changed"})).await,
            200,
        ),
        Flow::SoftDelete => (call(Method::DELETE, &path, Some(&alice), None).await, 204),
        Flow::HardDelete => (
            call(
                Method::DELETE,
                &format!("{path}?hard=true"),
                Some(&alice),
                None,
            )
            .await,
            204,
        ),
        Flow::UserLogout => (
            post(
                "/auth/logout",
                json!({"refreshToken": login["tokens"]["refreshToken"]}),
            )
            .await,
            204,
        ),
        Flow::PasswordReset => (
            call(
                Method::POST,
                &format!("{path}/password"),
                Some(&alice),
                Some(json!({"password": "another-good-password"})),
            )
            .await,
            204,
        ),
        Flow::AdminLogout => (
            call(Method::POST, &format!("{path}/logout"), Some(&alice), None).await,
            204,
        ),
        Flow::Register | Flow::AdminCreate => unreachable!("creations have their own run"),
    }
}
