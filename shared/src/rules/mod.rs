//! The pure rules: who may act on whom (`policy`), what a profile may contain (`profile`), and
//! what a request may state (`request`). No I/O.

pub mod policy;
pub mod profile;
pub mod request;
