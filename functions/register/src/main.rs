//! POST /auth/register: create the user in Keycloak, then its local record

// The handler future nests the Keycloak, store and idempotency futures deeply.
#![recursion_limit = "256"]

mod handler;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    user_sync::http::serve(handler::router()).await
}
