//! GET /auth/me, GET /auth/sessions, DELETE /auth/sessions/{sid}, POST /auth/token/validate

mod handler;

#[tokio::main]
async fn main() -> Result<(), user_sync::apigw::LambdaError> {
    user_sync::apigw::serve(handler::handle).await
}
