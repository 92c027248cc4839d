//! Integration tests of the delivery-service on the real PostgreSQL and SQS
//! emulator: in-process with each loop driven step by step, and as real
//! processes killed at any moment.

mod flow;
mod helpers;
mod outages;
mod processes;
