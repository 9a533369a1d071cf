//! POST /auth/register: create the user in Keycloak, then its local record

mod handler;

#[tokio::main]
async fn main() -> Result<(), user_sync::apigw::LambdaError> {
    user_sync::apigw::serve(handler::handle).await
}
