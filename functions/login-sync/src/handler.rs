//! `POST /auth/login`: password grant, then the user and the session recorded in one round trip.
//! `GET /auth/authorize`, `GET /auth/callback`, `POST /auth/callback/redeem`: sign-in on
//! Keycloak's page (the standard flow), recorded the same way (`user_sync::features::sign_in`).
//! `POST /auth/sync`: an app's own Keycloak token signs the user in (`user_sync::features::token_sync`).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use user_sync::features::sessions::{self, LoginRequest};
use user_sync::features::sign_in::{self, AuthorizeQuery, CallbackQuery, RedeemRequest};
use user_sync::features::token_sync::{self, SyncRequest};
use user_sync::http::{cookie, found, header, json, parse_json, AppState, Json, Origin, Query};
use user_sync::Error;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/authorize", get(authorize))
        .route("/auth/callback", get(callback))
        .route("/auth/callback/redeem", post(redeem))
        .route("/auth/sync", post(sync))
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
    let to = sign_in::authorize(&s, &q).await?;
    Ok(found(&to.location, &to.set_cookie))
}

async fn callback(
    State(s): State<AppState>,
    origin: Origin,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, Error> {
    let binding = cookie(&headers, sign_in::BINDING_COOKIE);
    let to = sign_in::callback(&s, &q, binding, &origin).await?;
    Ok(found(&to.location, &to.set_cookie))
}

async fn redeem(
    State(s): State<AppState>,
    Json(input): Json<RedeemRequest>,
) -> Result<Response, Error> {
    Ok(json(StatusCode::OK, &sign_in::redeem(&s, &input).await?))
}

/// The body is optional: an app that keeps its refresh token to itself sends none.
async fn sync(
    State(s): State<AppState>,
    origin: Origin,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Error> {
    let input = if body.is_empty() {
        SyncRequest::default()
    } else {
        parse_json(header(&headers, "content-type"), &body)?
    };
    let authorization = header(&headers, "authorization");
    Ok(json(
        StatusCode::OK,
        &token_sync::sync(&s, authorization, &input, &origin).await?,
    ))
}
