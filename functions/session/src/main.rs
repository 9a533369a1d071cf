//! GET /auth/me, GET /auth/sessions, DELETE /auth/sessions/{sid}, POST /auth/token/validate

mod handler;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    user_sync::http::serve(handler::router()).await
}
