//! `POST /auth/login`: password grant, then the user and the session recorded in one round trip.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use user_sync::http::{json, AppState, Json, Origin};
use user_sync::sessions::{self, LoginRequest};
use user_sync::Error;

pub fn router() -> Router<AppState> {
    Router::new().route("/auth/login", post(login))
}

async fn login(
    State(s): State<AppState>,
    origin: Origin,
    Json(input): Json<LoginRequest>,
) -> Result<Response, Error> {
    Ok(json(
        StatusCode::OK,
        &sessions::login(&s, &input, &origin).await?,
    ))
}
