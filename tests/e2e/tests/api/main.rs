//! The API's end-to-end specs, one binary: one local stack (what `make dev` runs) serves them all.
//! One module per area. The specs that disturb the whole stack (DynamoDB hanging, Keycloak's clock
//! moved: `faults`) or need the template's own route limits (`gateway_throttling`) are binaries of
//! their own, with stacks of their own.

mod abuse;
mod admin;
mod auth_flows;
mod authorization;
mod backchannel;
mod browser;
mod sign_in;
mod token_sync;
mod webhooks;
