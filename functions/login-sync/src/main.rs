//! POST /auth/login: password grant, then the user and the session recorded in one round trip

mod handler;

#[tokio::main]
async fn main() -> Result<(), user_sync::apigw::LambdaError> {
    user_sync::apigw::serve(handler::handle).await
}
