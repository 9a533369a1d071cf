//! POST /hooks/keycloak: one webhook delivery from Keycloak's events extension. No JWT: the
//! delivery is authenticated by its `X-Keycloak-Signature`. Answers 202 once the change is on the
//! queue (or acknowledged as not concerning a user); the hook consumer applies it.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use user_sync::error::Error;
use user_sync::features::hooks::{Intake, MAX_BODY};
use user_sync::http::{header, json};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let intake = Intake::from_env().await?;
    intake.warm_up().await;
    user_sync::http::run(
        Router::new().route("/hooks/keycloak", post(receive)),
        intake,
    )
    .await
}

async fn receive(State(intake): State<Intake>, request: Request) -> Result<Response, Error> {
    let signature = header(request.headers(), "x-keycloak-signature").map(str::to_owned);
    let body = axum::body::to_bytes(request.into_body(), MAX_BODY + 1)
        .await
        .map_err(|_| Error::PayloadTooLarge { limit: MAX_BODY })?;
    let receipt = intake.receive(signature.as_deref(), &body).await?;
    Ok(json(StatusCode::ACCEPTED, &receipt))
}
