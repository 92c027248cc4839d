//! Every metric the controller exports, declared in one place: names, help
//! texts and labels. Label values come from small fixed sets (results and
//! CamelCase reasons), never from object names.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `controller_reconciles_total` | counter | `result` = `success` \| `error` |
//! | `controller_reconcile_errors_total` | counter | `reason` (e.g. `invalid_spec`, `sqs`, `postgres`, `kubernetes`) |
//! | `controller_reconcile_duration_seconds` | histogram | |
//! | `controller_changes_total` | counter | `reason` (Event reason, e.g. `QueueCreated`) |
//! | `controller_leader` | gauge | (1 while this replica leads) |

use std::time::Duration;

pub const RECONCILES: &str = "controller_reconciles_total";
pub const RECONCILE_ERRORS: &str = "controller_reconcile_errors_total";
pub const RECONCILE_DURATION: &str = "controller_reconcile_duration_seconds";
pub const CHANGES: &str = "controller_changes_total";
pub const LEADER: &str = "controller_leader";

/// Registers the help texts (call once, after the recorder is installed).
pub fn describe() {
    metrics::describe_counter!(RECONCILES, "OrderPipeline reconciles, by result");
    metrics::describe_counter!(RECONCILE_ERRORS, "Failed OrderPipeline reconciles, by reason");
    metrics::describe_histogram!(RECONCILE_DURATION, metrics::Unit::Seconds, "Time one reconcile took");
    metrics::describe_counter!(CHANGES, "Changes made to queues, databases and published objects, by Event reason");
    metrics::describe_gauge!(LEADER, "1 while this replica holds the leader lease");
}

/// Records one finished reconcile; `error` is the failure reason label.
pub fn reconciled(took: Duration, error: Option<&'static str>) {
    metrics::histogram!(RECONCILE_DURATION).record(took.as_secs_f64());
    match error {
        None => metrics::counter!(RECONCILES, "result" => "success").increment(1),
        Some(reason) => {
            metrics::counter!(RECONCILES, "result" => "error").increment(1);
            metrics::counter!(RECONCILE_ERRORS, "reason" => reason).increment(1);
        }
    }
}

/// Records a change made (one per Event of a change).
pub fn changed(reason: &'static str) {
    metrics::counter!(CHANGES, "reason" => reason).increment(1);
}

/// Whether this replica leads.
pub fn leader(leading: bool) {
    metrics::gauge!(LEADER).set(if leading { 1.0 } else { 0.0 });
}
