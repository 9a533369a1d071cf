//! The adapters to the outside: Keycloak (admin API and OIDC), the store (DynamoDB), bearer
//! tokens (JWKS and validation), secrets (Secrets Manager), Lambda's asynchronous invoke, the
//! signed calls of the AWS APIs other than DynamoDB's, and the recorder of AWS calls.

pub mod auth;
pub mod aws_api;
pub mod aws_calls;
pub mod keycloak;
pub mod lambda;
pub mod secrets;
pub mod store;
