//! One realm's state: settings, clients, roles, groups, users, sessions and events, built from a
//! Keycloak realm export (RealmRepresentation). What a real import creates by itself
//! (`realm-management` and `account` clients and their roles, `offline_access`, `uma_authorization`,
//! the default-roles role) is created here too when the export leaves it out.

mod events;
mod import;
mod model;
mod sessions;
mod users;

pub use events::AuthDetails;
pub(crate) use import::strings;
pub use model::*;
