//! The shared library's integration tests, one binary: DynamoDB Local, moto and the Keycloak
//! emulator are started once for all of them (`common`), and each test has its own table, secret
//! and realm clone. One module per area.

#![allow(clippy::unwrap_used)]

mod common;

mod auth;
mod aws_api;
mod keycloak;
mod profiles;
mod secrets;
mod services;
mod sign_in;
mod store;
mod sync;
