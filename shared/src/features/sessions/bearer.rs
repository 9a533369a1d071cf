//! The bearer check of every user route (fail closed), and `POST /auth/token/validate`.

use serde::Serialize;
use serde_json::Value;

use crate::error::Error;
use crate::outside::auth::Principal;
use crate::outside::store::UserStatus;
use crate::services::Services;

use super::tokens::required;
use super::views::ValidateRequest;

/// The caller of a bearer route: a valid access token of a session this service opened and has
/// not ended, of a user who is neither deleted nor disabled here. Anything else is 401: the check
/// fails closed.
pub async fn authenticate(
    services: &Services,
    authorization: Option<&str>,
) -> Result<Principal, Error> {
    let principal = services.bearer.authenticate(authorization).await?;
    let sid = principal
        .session_id
        .as_deref()
        .ok_or(Error::Unauthenticated)?;
    let (session, user) = services
        .store
        .session_and_user(&principal.user_id, sid)
        .await?;
    let live_session = session.is_some_and(|s| s.ended_at.is_none());
    let usable_user = user.is_some_and(|u| u.status == UserStatus::Active);
    if live_session && usable_user {
        Ok(principal)
    } else {
        Err(Error::Unauthenticated)
    }
}

/// `POST /auth/token/validate`: whether a token would be accepted by a bearer route, and its claims.
#[derive(Clone, Debug, Serialize)]
pub struct Validation {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims: Option<Value>,
}

pub async fn validate(services: &Services, req: &ValidateRequest) -> Result<Validation, Error> {
    required("token", &req.token)?;
    match authenticate(services, Some(&format!("Bearer {}", req.token.trim()))).await {
        Ok(p) => Ok(Validation {
            active: true,
            claims: Some(p.claims),
        }),
        Err(Error::Unauthenticated) => Ok(Validation {
            active: false,
            claims: None,
        }),
        Err(e) => Err(e),
    }
}
