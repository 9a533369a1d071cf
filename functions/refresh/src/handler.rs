use std::sync::Arc;

use user_sync::apigw::{ApiRequest, ApiResponse};
use user_sync::services::Services;
use user_sync::sessions::{self, RefreshRequest};
use user_sync::Error;

pub async fn handle(services: Arc<Services>, req: ApiRequest) -> Result<ApiResponse, Error> {
    let input: RefreshRequest = req.json()?;
    let body = sessions::refresh(&services, &input).await?;
    Ok(ApiResponse::json(200, &body))
}
