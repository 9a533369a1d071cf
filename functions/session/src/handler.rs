//! The signed-in user's own view: who am I, my sessions, revoke one; and token validation.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::Router;
use user_sync::features::sessions::{self, ValidateRequest};
use user_sync::http::{json, AppState, Caller, Json};
use user_sync::Error;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/me", get(me))
        .route("/auth/sessions", get(my_sessions))
        .route("/auth/sessions/{sid}", delete(revoke))
        .route("/auth/token/validate", post(validate))
}

async fn me(State(s): State<AppState>, Caller(p): Caller) -> Result<Response, Error> {
    Ok(json(StatusCode::OK, &sessions::me(&s, &p).await?))
}

async fn my_sessions(State(s): State<AppState>, Caller(p): Caller) -> Result<Response, Error> {
    Ok(json(StatusCode::OK, &sessions::my_sessions(&s, &p).await?))
}

async fn revoke(
    State(s): State<AppState>,
    Caller(p): Caller,
    Path(sid): Path<String>,
) -> Result<StatusCode, Error> {
    sessions::revoke(&s, &p, &sid).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn validate(
    State(s): State<AppState>,
    Json(input): Json<ValidateRequest>,
) -> Result<Response, Error> {
    Ok(json(StatusCode::OK, &sessions::validate(&s, &input).await?))
}
