//! Every metric the controller exports, declared in one place: names, help
//! texts and labels (plus those `web` records for its HTTP side). Label values
//! come from small fixed sets (results and reasons), never from object names.

use std::time::Duration;

use telemetry::Metric;

pub const RECONCILES: Metric = Metric::counter(
    "controller_reconciles_total",
    "OrderPipeline reconciles, by result: success or error",
    &["result"],
);
pub const RECONCILE_ERRORS: Metric = Metric::counter(
    "controller_reconcile_errors_total",
    "Failed OrderPipeline reconciles, by reason (invalid_spec, sqs, postgres, kubernetes, ...)",
    &["reason"],
);
pub const RECONCILE_DURATION: Metric =
    Metric::histogram("controller_reconcile_duration_seconds", "Time one reconcile took", &[]);
pub const CHANGES: Metric = Metric::counter(
    "controller_changes_total",
    "Changes made to queues, databases and published objects, by Event reason",
    &["reason"],
);
pub const LEADER: Metric = Metric::gauge("controller_leader", "1 while this replica holds the leader lease", &[]);

const OWN: &[Metric] = &[RECONCILES, RECONCILE_ERRORS, RECONCILE_DURATION, CHANGES, LEADER];

/// Every metric this binary exposes.
pub fn all() -> Vec<Metric> {
    [OWN, web::metrics::ALL].concat()
}

/// Installs the recorder and registers the help texts and zero series.
pub fn declare() {
    telemetry::metric::declare(&all());
    for result in ["success", "error"] {
        RECONCILES.counter_with(&[result]).increment(0);
    }
}

/// Records one finished reconcile; `error` is the failure reason label.
pub fn reconciled(took: Duration, error: Option<&'static str>) {
    RECONCILE_DURATION.as_histogram().record(took.as_secs_f64());
    match error {
        None => RECONCILES.counter_with(&["success"]).increment(1),
        Some(reason) => {
            RECONCILES.counter_with(&["error"]).increment(1);
            RECONCILE_ERRORS.counter_with(&[reason]).increment(1);
        }
    }
}

/// Records a change made (one per Event of a change).
pub fn changed(reason: &'static str) {
    CHANGES.counter_with(&[reason]).increment(1);
}

/// Whether this replica leads.
pub fn leader(leading: bool) {
    LEADER.as_gauge().set(if leading { 1.0 } else { 0.0 });
}
