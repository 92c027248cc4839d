//! The metrics of a service's connection pool.

use telemetry::Metric;

pub const POOL_CONNECTIONS: Metric =
    Metric::gauge("db_pool_connections", "PostgreSQL pool connections: in_use, idle, and the pool's max", &["state"]);

pub const ALL: &[Metric] = &[POOL_CONNECTIONS];
