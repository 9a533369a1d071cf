//! What every keycloak-user-sync function shares, by role, each group importing only the ones
//! below it (`infra/import_graph.py` draws the graph; see the crate's README):
//!
//! - `http`: the HTTP edge on lambda_http + axum, the only module that names them;
//! - `features`: what the product does, in its words (registration, sessions, sign-in, user
//!   admin, sync control, the sync engine, the webhooks, repairs, audit, throttle);
//! - `services`: the clients and rules built once per cold start;
//! - `rules`: the pure rules (policy, profile, what a request may state);
//! - `error`: the one error type, mapped once to problem+json, and its codes;
//! - `outside`: the adapters to Keycloak, the store, bearer tokens, secrets and the AWS call
//!   recorder;
//! - `base`: the pieces with no I/O (clock, deadline, config, ids).

pub mod base;
pub mod error;
pub mod features;
pub mod http;
pub mod outside;
pub mod rules;
pub mod services;

pub use base::config::Config;
pub use error::{Error, FieldError, Problem, ProblemCode};
