//! `/admin/*`: admin user management, bulk-sync control and the audit trail. Each route
//! authenticates its caller, parses (a refused body or query is audited, then answered), calls
//! one function of the shared library and maps the result.

use std::collections::HashMap;

use axum::extract::{Path, Query as AnyQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use user_sync::features::audit::{self, AuditAction, AuditParams};
use user_sync::features::sync_control::{self, StartSyncRequest};
use user_sync::features::user_admin::{
    self, CreateUserRequest, ListParams, PasswordRequest, PatchUserRequest, SyncUserRequest,
};
use user_sync::features::users::{Created, UserView};
use user_sync::http::{header, json, AdminCall, AppState, Body, Query};
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

fn with_etag(user: &user_sync::outside::store::User) -> Response {
    let mut r = json(StatusCode::OK, &UserView::from(user));
    if let Ok(v) = user_admin::etag(user.version).parse() {
        r.headers_mut().insert("etag", v);
    }
    r
}

async fn list_users(
    State(s): State<AppState>,
    call: AdminCall,
    Query(params): Query<ListParams>,
) -> Result<Response, Error> {
    let page = user_admin::list(&s, call.actor(), params).await?;
    Ok(json(StatusCode::OK, &page))
}

async fn create_user(
    State(s): State<AppState>,
    call: AdminCall,
    body: Body<CreateUserRequest>,
) -> Result<Response, Error> {
    let input = audit::admit(
        &s,
        call.actor(),
        AuditAction::UserCreate,
        audit::NEW_USER,
        &body.fields,
        body.parsed,
    )
    .await?;
    let user = user_admin::create(&s, call.actor(), input).await?;
    Ok(json(StatusCode::CREATED, &Created { user }))
}

async fn get_user(
    State(s): State<AppState>,
    call: AdminCall,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let user = user_admin::get(&s, call.actor(), &id).await?;
    Ok(with_etag(&user))
}

async fn patch_user(
    State(s): State<AppState>,
    call: AdminCall,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body<PatchUserRequest>,
) -> Result<Response, Error> {
    let mut fields = body.fields;
    let input = body.parsed.and_then(|input| {
        let expected = user_admin::if_match(header(&headers, "if-match"));
        fields = input.field_names();
        Ok((expected?, input))
    });
    let (expected, input) = audit::admit(
        &s,
        call.actor(),
        AuditAction::UserUpdate,
        &id,
        &fields,
        input,
    )
    .await?;
    let user = user_admin::patch(&s, call.actor(), &id, expected, &input).await?;
    let mut answer = with_etag(&user);
    // Keycloak did not confirm the edit: accepted, held until Keycloak is read back.
    if user.pending_keycloak_write.is_some() {
        *answer.status_mut() = StatusCode::ACCEPTED;
    }
    Ok(answer)
}

async fn delete_user(
    State(s): State<AppState>,
    call: AdminCall,
    Path(id): Path<String>,
    // Every key, not a typed query: the audit record of a refused delete names the keys given.
    AnyQuery(q): AnyQuery<HashMap<String, String>>,
) -> Result<StatusCode, Error> {
    let hard = user_admin::hard_delete(q.get("hard").map(String::as_str));
    let fields: Vec<String> = q.keys().take(20).cloned().collect();
    let hard = audit::admit(
        &s,
        call.actor(),
        AuditAction::UserDelete,
        &id,
        &fields,
        hard,
    )
    .await?;
    user_admin::delete(&s, call.actor(), &id, hard).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_password(
    State(s): State<AppState>,
    call: AdminCall,
    Path(id): Path<String>,
    body: Body<PasswordRequest>,
) -> Result<StatusCode, Error> {
    let action = AuditAction::UserResetPassword;
    let input = audit::admit(&s, call.actor(), action, &id, &body.fields, body.parsed).await?;
    user_admin::set_password(&s, call.actor(), &id, &input).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn logout_user(
    State(s): State<AppState>,
    call: AdminCall,
    Path(id): Path<String>,
) -> Result<StatusCode, Error> {
    user_admin::logout(&s, call.actor(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn sync_user(
    State(s): State<AppState>,
    call: AdminCall,
    Path(id): Path<String>,
    body: Body<SyncUserRequest>,
) -> Result<Response, Error> {
    let input = audit::admit(
        &s,
        call.actor(),
        AuditAction::UserSync,
        &id,
        &body.fields,
        body.parsed,
    )
    .await?;
    let result = user_admin::sync_user(&s, call.actor(), &id, input.direction).await?;
    Ok(json(StatusCode::OK, &result))
}

async fn start_sync(
    State(s): State<AppState>,
    call: AdminCall,
    body: Body<StartSyncRequest>,
) -> Result<Response, Error> {
    let input = audit::admit(
        &s,
        call.actor(),
        AuditAction::SyncStart,
        audit::SYNC,
        &body.fields,
        body.parsed,
    )
    .await?;
    let started = sync_control::start_sync(&s, call.actor(), &input).await?;
    let location = format!("/admin/sync/runs/{}", started.run_id);
    let mut r = json(StatusCode::ACCEPTED, &started);
    if let Ok(v) = location.parse() {
        r.headers_mut().insert("location", v);
    }
    Ok(r)
}

async fn sync_run(
    State(s): State<AppState>,
    call: AdminCall,
    Path(run_id): Path<String>,
) -> Result<Response, Error> {
    let run = sync_control::sync_run(&s, call.actor(), &run_id).await?;
    Ok(json(StatusCode::OK, &run))
}

async fn sync_status(
    State(s): State<AppState>,
    call: AdminCall,
) -> Result<impl IntoResponse, Error> {
    let status = sync_control::sync_status(&s, call.actor()).await?;
    Ok(json(StatusCode::OK, &status))
}

async fn list_audit(
    State(s): State<AppState>,
    call: AdminCall,
    Query(q): Query<AuditParams>,
) -> Result<Response, Error> {
    let page = audit::list(&s, call.actor(), q).await?;
    Ok(json(StatusCode::OK, &page))
}
