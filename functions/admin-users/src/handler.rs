//! `/admin/*`: admin user management, bulk-sync control and the audit trail. Each route parses,
//! calls one function of the shared library and maps the result.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use user_sync::audit::{self, Actor};
use user_sync::http::{header, json, AppState, Caller, Json, Origin};
use user_sync::sync_control::{self, StartSyncRequest};
use user_sync::user_admin::{
    self, CreateUserRequest, ListParams, PasswordRequest, PatchUserRequest, SyncUserRequest,
};
use user_sync::users::{Created, UserView};
use user_sync::Error;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/users", get(list_users).post(create_user))
        .route(
            "/admin/users/{id}",
            get(get_user).patch(patch_user).delete(delete_user),
        )
        .route("/admin/users/{id}/password", post(set_password))
        .route("/admin/users/{id}/logout", post(logout_user))
        .route("/admin/users/{id}/sync", post(sync_user))
        .route("/admin/sync", post(start_sync))
        .route("/admin/sync/runs/{run_id}", get(sync_run))
        .route("/admin/sync/status", get(sync_status))
        .route("/admin/audit", get(list_audit))
}

type Params = Query<HashMap<String, String>>;

fn actor<'a>(caller: &'a Caller, origin: &'a Origin) -> Actor<'a> {
    Actor {
        principal: &caller.0,
        request_id: &origin.request_id,
    }
}

fn with_etag(user: &user_sync::store::User) -> Response {
    let mut r = json(StatusCode::OK, &UserView::from(user));
    if let Ok(v) = user_admin::etag(user.version).parse() {
        r.headers_mut().insert("etag", v);
    }
    r
}

async fn list_users(
    State(s): State<AppState>,
    caller: Caller,
    origin: Origin,
    Query(q): Params,
) -> Result<Response, Error> {
    let params = ListParams {
        limit: q.get("limit").cloned(),
        cursor: q.get("cursor").cloned(),
        q: q.get("q").cloned(),
        status: q.get("status").cloned(),
    };
    let page = user_admin::list(&s, actor(&caller, &origin), params).await?;
    Ok(json(StatusCode::OK, &page))
}

async fn create_user(
    State(s): State<AppState>,
    caller: Caller,
    origin: Origin,
    Json(input): Json<CreateUserRequest>,
) -> Result<Response, Error> {
    let user = user_admin::create(&s, actor(&caller, &origin), input).await?;
    Ok(json(StatusCode::CREATED, &Created { user }))
}

async fn get_user(
    State(s): State<AppState>,
    caller: Caller,
    origin: Origin,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let user = user_admin::get(&s, actor(&caller, &origin), &id).await?;
    Ok(with_etag(&user))
}

async fn patch_user(
    State(s): State<AppState>,
    caller: Caller,
    origin: Origin,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(input): Json<PatchUserRequest>,
) -> Result<Response, Error> {
    let expected = user_admin::if_match(header(&headers, "if-match"))?;
    let user = user_admin::patch(&s, actor(&caller, &origin), &id, expected, &input).await?;
    Ok(with_etag(&user))
}

async fn delete_user(
    State(s): State<AppState>,
    caller: Caller,
    origin: Origin,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<StatusCode, Error> {
    let hard = user_admin::hard_delete(q.get("hard").map(String::as_str))?;
    user_admin::delete(&s, actor(&caller, &origin), &id, hard).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_password(
    State(s): State<AppState>,
    caller: Caller,
    origin: Origin,
    Path(id): Path<String>,
    Json(input): Json<PasswordRequest>,
) -> Result<StatusCode, Error> {
    user_admin::set_password(&s, actor(&caller, &origin), &id, &input).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn logout_user(
    State(s): State<AppState>,
    caller: Caller,
    origin: Origin,
    Path(id): Path<String>,
) -> Result<StatusCode, Error> {
    user_admin::logout(&s, actor(&caller, &origin), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn sync_user(
    State(s): State<AppState>,
    caller: Caller,
    origin: Origin,
    Path(id): Path<String>,
    Json(input): Json<SyncUserRequest>,
) -> Result<Response, Error> {
    let result = user_admin::sync_user(&s, actor(&caller, &origin), &id, input.direction).await?;
    Ok(json(StatusCode::OK, &result))
}

async fn start_sync(
    State(s): State<AppState>,
    caller: Caller,
    origin: Origin,
    Json(input): Json<StartSyncRequest>,
) -> Result<Response, Error> {
    let started = sync_control::start_sync(&s, actor(&caller, &origin), &input).await?;
    let location = format!("/admin/sync/runs/{}", started.run_id);
    let mut r = json(StatusCode::ACCEPTED, &started);
    if let Ok(v) = location.parse() {
        r.headers_mut().insert("location", v);
    }
    Ok(r)
}

async fn sync_run(
    State(s): State<AppState>,
    caller: Caller,
    origin: Origin,
    Path(run_id): Path<String>,
) -> Result<Response, Error> {
    let run = sync_control::sync_run(&s, actor(&caller, &origin), &run_id).await?;
    Ok(json(StatusCode::OK, &run))
}

async fn sync_status(
    State(s): State<AppState>,
    caller: Caller,
    origin: Origin,
) -> Result<impl IntoResponse, Error> {
    let status = sync_control::sync_status(&s, actor(&caller, &origin)).await?;
    Ok(json(StatusCode::OK, &status))
}

async fn list_audit(
    State(s): State<AppState>,
    caller: Caller,
    origin: Origin,
    Query(q): Params,
) -> Result<Response, Error> {
    let page = audit::list(
        &s,
        actor(&caller, &origin),
        q.get("target").cloned(),
        q.get("actor").cloned(),
        q.get("limit").map(String::as_str),
        q.get("cursor").cloned(),
    )
    .await?;
    Ok(json(StatusCode::OK, &page))
}
