//! `POST /auth/logout`: Keycloak logout, session ended; idempotent.
//! `POST /auth/backchannel-logout`: Keycloak's back-channel logout ends the matching sessions.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use user_sync::features::backchannel::{self, LogoutRequest};
use user_sync::features::sessions::{self, RefreshRequest};
use user_sync::http::{AppState, Form, Json};
use user_sync::Error;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/logout", post(logout))
        .route("/auth/backchannel-logout", post(backchannel_logout))
}

async fn logout(
    State(s): State<AppState>,
    Json(input): Json<RefreshRequest>,
) -> Result<StatusCode, Error> {
    sessions::logout(&s, &input).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// 200 with no body (the spec's answer; every answer here is `Cache-Control: no-store`).
async fn backchannel_logout(
    State(s): State<AppState>,
    Form(input): Form<LogoutRequest>,
) -> Result<StatusCode, Error> {
    backchannel::logout(&s, &input).await?;
    Ok(StatusCode::OK)
}
