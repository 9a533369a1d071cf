//! `POST /auth/register`: a new user in Keycloak, then its local record.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use user_sync::features::users::{self, Created, RegisterRequest};
use user_sync::http::{header, json, AppState, Json, Origin};
use user_sync::Error;

pub fn router() -> Router<AppState> {
    Router::new().route("/auth/register", post(register))
}

async fn register(
    State(s): State<AppState>,
    origin: Origin,
    headers: HeaderMap,
    Json(input): Json<RegisterRequest>,
) -> Result<Response, Error> {
    let key = header(&headers, "idempotency-key");
    let user = users::register(&s, &input, key, &origin).await?;
    Ok(json(StatusCode::CREATED, &Created { user }))
}
