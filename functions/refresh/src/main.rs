//! POST /auth/refresh: refresh grant, session record updated

mod handler;

#[tokio::main]
async fn main() -> Result<(), user_sync::apigw::LambdaError> {
    user_sync::apigw::serve(handler::handle).await
}
