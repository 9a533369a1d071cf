//! What every keycloak-user-sync function shares. Features, in the product's words: `users`
//! (registration), `sessions` (login, refresh, logout, the bearer check), `user_admin`,
//! `sync_control`, `sync` (the reconcile engine), `hooks` (the webhook intake and consumer),
//! `repair`, `policy` (who may act on whom), `profile` (what a profile may contain), `audit`,
//! `throttle`. Beneath them: `http` (the HTTP edge on lambda_http + axum, the only module that
//! names them), `request` (what a request states, as plain values), `error` (one error type,
//! mapped once to problem+json), `deadline` (every outbound call bounded by the invocation's
//! time), `clock`, `auth` (bearer tokens), `keycloak`, `observe` (Keycloak's view of one user as stored), `store` (DynamoDB), `secrets`, `config`,
//! and `services`, which builds them once per cold start. Imports run one way
//! (`infra/import_graph.py` draws them).

pub mod audit;
pub mod auth;
pub mod aws_calls;
pub mod backchannel;
pub mod clock;
pub mod config;
pub mod deadline;
pub mod error;
pub mod hooks;
pub mod http;
pub mod ids;
pub mod keycloak;
pub mod observe;
pub mod policy;
pub mod profile;
pub mod repair;
pub mod request;
pub mod secrets;
pub mod services;
pub mod sessions;
pub mod sign_in;
pub mod store;
pub mod sync;
pub mod sync_control;
pub mod throttle;
pub mod token_sync;
pub mod user_admin;
pub mod users;

pub use config::Config;
pub use error::{Error, FieldError, Problem, ProblemCode};
