//! POST /auth/logout: Keycloak logout, session ended

mod handler;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    user_sync::http::serve(handler::router()).await
}
