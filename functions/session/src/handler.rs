use std::sync::Arc;

use serde_json::json;
use user_sync::apigw::{ApiRequest, ApiResponse};
use user_sync::services::Services;
use user_sync::sessions::{self, ValidateRequest};
use user_sync::Error;

pub async fn handle(services: Arc<Services>, req: ApiRequest) -> Result<ApiResponse, Error> {
    let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    match (req.method.as_str(), segments.as_slice()) {
        ("POST", ["auth", "token", "validate"]) => {
            let input: ValidateRequest = req.json()?;
            Ok(ApiResponse::json(
                200,
                &sessions::validate(&services, &input).await?,
            ))
        }
        ("GET", ["auth", "me"]) => {
            let principal = sessions::authenticate(&services, req.header("authorization")).await?;
            Ok(ApiResponse::json(
                200,
                &sessions::me(&services, &principal).await?,
            ))
        }
        ("GET", ["auth", "sessions"]) => {
            let principal = sessions::authenticate(&services, req.header("authorization")).await?;
            let items = sessions::my_sessions(&services, &principal).await?;
            Ok(ApiResponse::json(200, &json!({ "items": items })))
        }
        ("DELETE", ["auth", "sessions", _]) => {
            let principal = sessions::authenticate(&services, req.header("authorization")).await?;
            sessions::revoke(&services, &principal, req.path_param("sid")?).await?;
            Ok(ApiResponse::no_content())
        }
        _ => Err(Error::NotFound),
    }
}
