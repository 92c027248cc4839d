//! HTTP mechanics every orderflow service shares: RFC 9457 problem responses,
//! the common middleware stack (request ids, request logging, HTTP metrics,
//! timeouts), the fallbacks for unknown routes and methods, readiness
//! reporting, and the serve-then-shut-down-in-order runner.
//!
//! Services build their own routers and error enums on top; this crate owns no
//! route of its own.

pub mod health;
pub mod metrics;
pub mod middleware;
pub mod problem;
pub mod serve;

pub use health::{Accepting, Probe, readiness};
pub use middleware::{layered, with_openapi};
pub use problem::{FieldError, Problem};
