//! HTTP mechanics every orderflow service shares: RFC 9457 problem responses,
//! the common middleware stack (request ids, request logging, HTTP metrics,
//! timeouts) and the fallbacks for unknown routes and methods.
//!
//! Services build their own routers and error enums on top; this crate owns no
//! route of its own.

pub mod middleware;
pub mod problem;

pub use middleware::layered;
pub use problem::{FieldError, Problem};
