//! `POST /auth/login`: password grant, then the user and the session recorded in one round trip.
//! `GET /auth/authorize`, `GET /auth/callback`, `POST /auth/callback/redeem`: sign-in on
//! Keycloak's page (the standard flow), recorded the same way (`user_sync::sign_in`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use user_sync::http::{found, json, AppState, Json, Origin, Query};
use user_sync::sessions::{self, LoginRequest};
use user_sync::sign_in::{self, AuthorizeQuery, CallbackQuery, RedeemRequest};
use user_sync::Error;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/authorize", get(authorize))
        .route("/auth/callback", get(callback))
        .route("/auth/callback/redeem", post(redeem))
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

async fn authorize(
    State(s): State<AppState>,
    Query(q): Query<AuthorizeQuery>,
) -> Result<Response, Error> {
    Ok(found(&sign_in::authorize(&s, &q).await?))
}

async fn callback(
    State(s): State<AppState>,
    origin: Origin,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, Error> {
    Ok(found(&sign_in::callback(&s, &q, &origin).await?))
}

async fn redeem(
    State(s): State<AppState>,
    Json(input): Json<RedeemRequest>,
) -> Result<Response, Error> {
    Ok(json(StatusCode::OK, &sign_in::redeem(&s, &input).await?))
}
