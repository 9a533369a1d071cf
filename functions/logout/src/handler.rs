//! `POST /auth/logout`: Keycloak logout, session ended; idempotent.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use user_sync::http::{AppState, Json};
use user_sync::sessions::{self, RefreshRequest};
use user_sync::Error;

pub fn router() -> Router<AppState> {
    Router::new().route("/auth/logout", post(logout))
}

async fn logout(
    State(s): State<AppState>,
    Json(input): Json<RefreshRequest>,
) -> Result<StatusCode, Error> {
    sessions::logout(&s, &input).await?;
    Ok(StatusCode::NO_CONTENT)
}
