//! HTTP mechanics every orderflow service shares: RFC 9457 problem responses,
//! the common middleware stack (request ids, request logging, HTTP metrics,
//! timeouts), the fallbacks for unknown routes and methods, readiness
//! reporting, and the serve-then-shut-down-in-order runner.
//!
//! Services build their own routers and error enums on top; this crate owns no
//! route of its own.

pub mod health;
pub mod middleware;
pub mod problem;
pub mod serve;

pub use health::{Accepting, Probe, metrics_response, readiness};
pub use middleware::layered;
pub use problem::{FieldError, Problem};
