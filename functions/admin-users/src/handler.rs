use std::sync::Arc;

use serde_json::json;
use user_sync::admin::{
    self, CreateUserRequest, ListParams, PasswordRequest, PatchUserRequest, SyncUserRequest,
};
use user_sync::apigw::{ApiRequest, ApiResponse};
use user_sync::services::Services;
use user_sync::sessions;
use user_sync::users::UserView;
use user_sync::Error;

pub async fn handle(services: Arc<Services>, req: ApiRequest) -> Result<ApiResponse, Error> {
    let principal = sessions::authenticate(&services, req.header("authorization")).await?;
    let config = &services.config;
    let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    match (req.method.as_str(), segments.as_slice()) {
        ("GET", ["admin", "users"]) => {
            principal.require_manager(config)?;
            let q = |k: &str| req.query.get(k).cloned();
            let params = ListParams {
                limit: q("limit"),
                cursor: q("cursor"),
                q: q("q"),
                status: q("status"),
            };
            Ok(ApiResponse::json(
                200,
                &admin::list(&services, params).await?,
            ))
        }
        ("POST", ["admin", "users"]) => {
            principal.require_manager(config)?;
            let input: CreateUserRequest = req.json()?;
            let user = admin::create(&services, input).await?;
            Ok(ApiResponse::json(201, &json!({ "user": user })))
        }
        ("GET", ["admin", "users", id]) => {
            principal.require_manager(config)?;
            let user = admin::get(&services, id).await?;
            Ok(ApiResponse::json(200, &UserView::from(&user))
                .with_header("etag", admin::etag(user.version)))
        }
        ("PATCH", ["admin", "users", id]) => {
            principal.require_manager(config)?;
            let expected = admin::if_match(req.header("if-match"))?;
            let input: PatchUserRequest = req.json()?;
            let user = admin::patch(&services, id, expected, &input).await?;
            Ok(ApiResponse::json(200, &UserView::from(&user))
                .with_header("etag", admin::etag(user.version)))
        }
        ("DELETE", ["admin", "users", id]) => {
            principal.require_admin(config)?;
            let hard = req.query.get("hard").is_some_and(|h| h == "true");
            admin::delete(&services, id, hard).await?;
            Ok(ApiResponse::no_content())
        }
        ("POST", ["admin", "users", id, "password"]) => {
            principal.require_manager(config)?;
            let input: PasswordRequest = req.json()?;
            admin::set_password(&services, id, &input).await?;
            Ok(ApiResponse::no_content())
        }
        ("POST", ["admin", "users", id, "sync"]) => {
            principal.require_manager(config)?;
            let input: SyncUserRequest = req.json()?;
            Ok(ApiResponse::json(
                200,
                &admin::sync_user(&services, id, input.direction).await?,
            ))
        }
        ("POST", ["admin", "sync"]) => {
            principal.require_admin(config)?;
            let input: admin::StartSyncRequest = req.json()?;
            let run_id = admin::start_sync(&services, &input).await?;
            Ok(ApiResponse::json(202, &json!({ "runId": run_id }))
                .with_header("location", format!("/admin/sync/runs/{run_id}")))
        }
        ("GET", ["admin", "sync", "runs", run_id]) => {
            principal.require_admin(config)?;
            Ok(ApiResponse::json(
                200,
                &admin::sync_run(&services, run_id).await?,
            ))
        }
        ("GET", ["admin", "sync", "status"]) => {
            principal.require_admin(config)?;
            Ok(ApiResponse::json(
                200,
                &admin::sync_status(&services).await?,
            ))
        }
        _ => Err(Error::NotFound),
    }
}
