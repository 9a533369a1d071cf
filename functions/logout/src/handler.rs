use std::sync::Arc;

use user_sync::apigw::{ApiRequest, ApiResponse};
use user_sync::services::Services;
use user_sync::sessions::{self, RefreshRequest};
use user_sync::Error;

pub async fn handle(services: Arc<Services>, req: ApiRequest) -> Result<ApiResponse, Error> {
    let input: RefreshRequest = req.json()?;
    sessions::logout(&services, &input).await?;
    Ok(ApiResponse::no_content())
}
