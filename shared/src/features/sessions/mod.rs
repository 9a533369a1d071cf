//! Sign-in and sessions: login (password grant, token verified, user and session written in one
//! round trip), refresh, logout, token validation, and a user's view of their own sessions —
//! one file each (`login`, `refresh`, `logout`, `bearer`, `own`), with the requests and answers
//! (`views`) and what the grants share about tokens (`tokens`).

mod bearer;
mod login;
mod logout;
mod own;
mod refresh;
mod tokens;
mod views;

pub use crate::rules::request::Origin;
pub use bearer::{authenticate, validate, Validation};
pub use login::login;
pub(crate) use login::record_sign_in;
pub use logout::logout;
pub use own::{me, my_sessions, revoke, SessionList, SessionView};
pub use refresh::refresh;
pub(crate) use tokens::identity;
pub use views::{
    LoginRequest, LoginView, RefreshRequest, RefreshView, TokensView, ValidateRequest,
};
