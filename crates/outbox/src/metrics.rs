//! The metrics of the outbox relay.

use telemetry::Metric;

pub const PUBLISHED: Metric = Metric::counter("outbox_published_total", "Outbox rows accepted by SQS and deleted", &[]);
pub const REFUSED: Metric =
    Metric::counter("outbox_refused_total", "Outbox rows SQS refused in a batch; retried with back-off", &[]);
pub const PUBLISH_FAILURES: Metric = Metric::counter(
    "outbox_publish_failures_total",
    "Outbox rows whose SendMessageBatch call failed as a whole (SQS unreachable, throttled)",
    &[],
);
pub const PUBLISH_DELAY: Metric =
    Metric::histogram("outbox_publish_delay_seconds", "Time from an outbox row's commit to its acceptance by SQS", &[]);
pub const BACKLOG: Metric = Metric::gauge("outbox_backlog", "Outbox rows waiting to be published", &[]);

pub const PARKED: Metric = Metric::counter(
    "outbox_parked_total",
    "Outbox rows parked after OUTBOX_MAX_ATTEMPTS refusals by SQS (list: `outbox parked`, retry: `outbox requeue`)",
    &[],
);
pub const PARKED_ROWS: Metric =
    Metric::gauge("outbox_parked_rows", "Outbox rows parked now, each holding back its order's later events", &[]);

pub const ALL: &[Metric] = &[PUBLISHED, REFUSED, PUBLISH_FAILURES, PUBLISH_DELAY, BACKLOG, PARKED, PARKED_ROWS];
