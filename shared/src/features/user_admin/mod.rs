//! Admin user management with write-through to Keycloak. Every mutation goes the same way:
//! the path id is checked; the policy decides from the target's roles as Keycloak has them now;
//! the local record is reserved under a write lock with a new version (other writers get
//! `409 write_in_progress`, a stale ETag `412`); Keycloak is written (GET → merge → PUT); then the
//! reservation is finished, or undone as a newer version if Keycloak refused. Every mutation,
//! allowed or not, leaves an audit record.
//!
//! By job: `access` (who may act on whom), `write_through` (one edit here and in Keycloak),
//! `read`, `create`, `patch`, `delete`, `password`, `sessions` (a user's sessions ended),
//! `sync_user` (one user brought in step).

mod access;
mod create;
mod delete;
mod password;
mod patch;
mod read;
mod sessions;
mod sync_user;
mod write_through;

pub use create::{create, CreateUserRequest};
pub use delete::{delete, hard_delete};
pub use password::{set_password, PasswordRequest};
pub use patch::{patch, PatchUserRequest};
pub use read::{etag, get, if_match, list, ListParams, UserPage};
pub use sessions::logout;
pub use sync_user::{sync_user, Direction, SyncUserRequest, SyncUserResult};
