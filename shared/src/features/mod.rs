//! The features, in the product's words: registration (`users`), sessions (the password login,
//! refresh, logout, the bearer check), sign-in on Keycloak's page (`sign_in`, the standard
//! flow), the token login-sync of apps that run it themselves (`token_sync`), back-channel
//! logout, user administration, sync control, the sync engine, the webhooks (`hooks`), repairs,
//! the audit trail and the throttle. `observe` is Keycloak's view of
//! one user as the store keeps it, read by the syncs and the repairs.

pub mod audit;
pub mod backchannel;
pub mod hooks;
pub mod observe;
pub mod repair;
pub mod sessions;
pub mod sign_in;
pub mod sync;
pub mod sync_control;
pub mod throttle;
pub mod token_sync;
pub mod user_admin;
pub mod users;
