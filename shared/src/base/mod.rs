//! The pieces with no I/O: the clock, the invocation's deadline, the configuration read once from
//! the environment, and the shape of ids.

pub mod clock;
pub mod config;
pub mod deadline;
pub mod ids;
