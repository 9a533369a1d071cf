//! Reading users: the listing of `GET /admin/users`, one user, and the ETag of a record.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::features::audit::Actor;
use crate::features::users::UserView;
use crate::outside::store::{ListQuery, User, UserStatus};
use crate::rules::policy::Action;
use crate::rules::request::keycloak_id;
use crate::services::Services;

use super::access::record;

/// `"<version>"`, the ETag of a user record.
pub fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

/// The version an `If-Match` names; `None` when the header is absent.
pub fn if_match(header: Option<&str>) -> Result<Option<u64>, Error> {
    let Some(h) = header.map(str::trim).filter(|h| !h.is_empty()) else {
        return Ok(None);
    };
    let v = h.trim_start_matches("W/").trim_matches('"');
    v.parse().map(Some).map_err(|_| Error::PreconditionFailed)
}

/// The query of `GET /admin/users` (unknown keys are ignored; a key given twice is refused).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ListParams {
    pub limit: Option<String>,
    pub cursor: Option<String>,
    pub q: Option<String>,
    pub status: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserPage {
    pub items: Vec<UserView>,
    pub next_cursor: Option<String>,
}

pub async fn list(services: &Services, actor: Actor<'_>, p: ListParams) -> Result<UserPage, Error> {
    services.policy.allow_route(actor.principal, Action::Read)?;
    let limit = crate::rules::request::limit(p.limit.as_deref())?;
    let status = match p.status.as_deref() {
        None | Some("") => None,
        Some("active") => Some(UserStatus::Active),
        Some("disabled") => Some(UserStatus::Disabled),
        Some("deleted") => Some(UserStatus::Deleted),
        Some("pending") => Some(UserStatus::Pending),
        Some(_) => {
            return Err(Error::field(
                "status",
                "must be active, disabled, deleted or pending",
            ))
        }
    };
    let page = services
        .store
        .list_users(&ListQuery {
            limit,
            cursor: p.cursor.filter(|c| !c.is_empty()),
            prefix: p.q,
            status,
        })
        .await?;
    let service_accounts = services.keycloak.service_account_users().await?;
    Ok(UserPage {
        items: page
            .items
            .iter()
            .filter(|u| !service_accounts.contains(&u.id))
            .map(UserView::from)
            .collect(),
        next_cursor: page.next_cursor,
    })
}

pub async fn get(services: &Services, actor: Actor<'_>, id: &str) -> Result<User, Error> {
    services.policy.allow_route(actor.principal, Action::Read)?;
    record(services, keycloak_id(id)?).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_reads_strong_weak_and_bare_etags() {
        assert_eq!(if_match(Some("\"3\"")).unwrap(), Some(3));
        assert_eq!(if_match(Some("W/\"3\"")).unwrap(), Some(3));
        assert_eq!(if_match(None).unwrap(), None);
        assert!(if_match(Some("\"abc\"")).is_err());
        assert_eq!(etag(7), "\"7\"");
    }
}
