//! `POST /admin/users`: an account made by an admin, through the registration's own path.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::features::audit::{self, Actor, AuditAction};
use crate::features::users::{self, RegisterRequest, UserView};
use crate::rules::policy::Action;
use crate::rules::profile::Editor;
use crate::services::Services;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateUserRequest {
    pub username: String,
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub temporary_password: Option<bool>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

impl CreateUserRequest {
    /// The names of the fields the request sets (for the audit record).
    fn field_names(&self) -> Vec<String> {
        audit::field_names(self)
    }
}

pub async fn create(
    services: &Services,
    actor: Actor<'_>,
    req: CreateUserRequest,
) -> Result<UserView, Error> {
    let fields = req.field_names();
    let result = async {
        services
            .policy
            .allow_route(actor.principal, Action::Create)?;
        let as_registration = RegisterRequest {
            username: req.username,
            email: req.email,
            password: req.password.clone(),
            first_name: req.first_name,
            last_name: req.last_name,
            attributes: req.attributes,
        };
        let account =
            users::validate_new_account(services, &as_registration, Editor::Admin).await?;
        let account = users::NewAccount {
            enabled: req.enabled.unwrap_or(true),
            temporary_password: req.temporary_password.unwrap_or(false),
            ..account
        };
        users::create_account(services, &req.password, account, None).await
    }
    .await;
    let target = result.as_ref().map_or(audit::NEW_USER, |u| u.id.as_str());
    audit::record(
        services,
        actor,
        AuditAction::UserCreate,
        target,
        &fields,
        &result,
    )
    .await;
    result
}
