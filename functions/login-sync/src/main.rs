//! POST /auth/login: password grant, then the user and the session recorded in one round trip

mod handler;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    user_sync::http::serve(handler::router()).await
}
