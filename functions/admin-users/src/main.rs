//! /admin/*: admin user management with write-through to Keycloak, bulk-sync control, audit.

mod handler;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    user_sync::http::serve(handler::router()).await
}
