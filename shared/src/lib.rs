//! What every keycloak-user-sync function shares, organised by domain: `config`, `error` (one
//! error type, mapped once to problem+json), `secrets`, `keycloak`, `auth`, `store`, `http`, and
//! `services`, which builds them all once per cold start.

pub mod audit;
pub mod auth;
pub mod config;
pub mod deadline;
pub mod error;
pub mod http;
pub mod keycloak;
pub mod policy;
pub mod profile;
pub mod repair;
pub mod secrets;
pub mod services;
pub mod sessions;
pub mod store;
pub mod sync;
pub mod sync_control;
pub mod throttle;
pub mod user_admin;
pub mod users;

pub use config::Config;
pub use error::{Error, FieldError, Problem};
