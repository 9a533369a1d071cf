//! `POST /auth/refresh`: refresh grant, session record rotated.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use user_sync::features::sessions::{self, RefreshRequest};
use user_sync::http::{json, AppState, Json};
use user_sync::Error;

pub fn router() -> Router<AppState> {
    Router::new().route("/auth/refresh", post(refresh))
}

async fn refresh(
    State(s): State<AppState>,
    Json(input): Json<RefreshRequest>,
) -> Result<Response, Error> {
    Ok(json(StatusCode::OK, &sessions::refresh(&s, &input).await?))
}
