use std::sync::Arc;

use user_sync::apigw::{ApiRequest, ApiResponse};
use user_sync::services::Services;
use user_sync::sessions::{self, LoginRequest, Origin};
use user_sync::Error;

pub async fn handle(services: Arc<Services>, req: ApiRequest) -> Result<ApiResponse, Error> {
    let input: LoginRequest = req.json()?;
    let origin = Origin {
        ip: req.source_ip.clone(),
        user_agent: req.user_agent.clone(),
    };
    let body = sessions::login(&services, &input, &origin).await?;
    Ok(ApiResponse::json(200, &body))
}
