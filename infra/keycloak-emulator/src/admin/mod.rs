//! The admin REST API under `/admin/realms/{realm}` (contract §4–§6), routed with axum by
//! resource: `users` (and sessions, brute-force status), `roles` (and role mappings, clients),
//! `groups` (and membership), `events`, and the user `profile`. Permissions come from the bearer
//! token's `resource_access.realm-management.roles`, as in Keycloak; every handler runs on its
//! realm as the authenticated caller, and every failure is the answer Keycloak would give.

mod caller;
mod events;
mod groups;
mod profile;
mod roles;
mod user_search;
mod user_writes;
mod users;
pub mod webhooks;

use std::sync::Arc;

use axum::response::Response;
use axum::Router;

use crate::emulator::Emulator;
use crate::http::{method_not_allowed, no_such_resource};

pub use caller::Admin;

pub fn router() -> Router<Arc<Emulator>> {
    Router::new()
        .merge(users::router())
        .merge(roles::router())
        .merge(groups::router())
        .merge(events::router())
        .merge(profile::router())
        .method_not_allowed_fallback(|| async { method_not_allowed() })
        .fallback(unknown)
}

/// A path Keycloak has no resource for: still authenticated first, as Keycloak's admin root is.
async fn unknown(a: Admin) -> Response {
    a.read(|_, _| Ok(no_such_resource()))
}
