//! /admin/*: admin user management with write-through to Keycloak.

mod handler;

#[tokio::main]
async fn main() -> Result<(), user_sync::apigw::LambdaError> {
    user_sync::apigw::serve(handler::handle).await
}
