use std::sync::Arc;

use serde_json::json;
use user_sync::apigw::{ApiRequest, ApiResponse};
use user_sync::services::Services;
use user_sync::users::{self, RegisterRequest};
use user_sync::Error;

pub async fn handle(services: Arc<Services>, req: ApiRequest) -> Result<ApiResponse, Error> {
    let input: RegisterRequest = req.json()?;
    let user = users::register(&services, &input, req.header("idempotency-key")).await?;
    Ok(ApiResponse::json(201, &json!({ "user": user })))
}
