//! Status conditions from the outcome of a reconcile: `QueuesReady`,
//! `DatabasesReady` and `ConfigPublished` each say how their part went, and
//! `Ready` sums them up (or says why nothing was attempted). A condition's
//! `lastTransitionTime` moves only when its status changes, so an unchanged
//! outcome gives an unchanged status, which the controller then does not write.

use crate::resource::Condition;

pub const READY: &str = "Ready";
pub const QUEUES_READY: &str = "QueuesReady";
pub const DATABASES_READY: &str = "DatabasesReady";
pub const CONFIG_PUBLISHED: &str = "ConfigPublished";

/// How one part went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub status: Status,
    /// CamelCase, for machines.
    pub reason: String,
    /// For people: what is true, or what to do.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

impl Part {
    pub fn ready(reason: &str, message: impl Into<String>) -> Self {
        Part { status: Status::True, reason: reason.into(), message: message.into() }
    }
    pub fn failed(reason: &str, message: impl Into<String>) -> Self {
        Part { status: Status::False, reason: reason.into(), message: message.into() }
    }
    pub fn unknown(reason: &str, message: impl Into<String>) -> Self {
        Part { status: Status::Unknown, reason: reason.into(), message: message.into() }
    }
    pub fn is_ready(&self) -> bool {
        self.status == Status::True
    }
}

/// The three parts of a reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parts {
    pub queues: Part,
    pub databases: Part,
    pub config: Part,
}

impl Parts {
    /// Every part not attempted, for `reason` (an invalid spec, a missing Secret).
    pub fn not_attempted(reason: &str, message: &str) -> Self {
        let part = Part::unknown(reason, format!("not reconciled: {message}"));
        Parts { queues: part.clone(), databases: part.clone(), config: part }
    }

    /// `Ready`: true when every part is; otherwise the first part that is not, and why.
    pub fn ready(&self) -> Part {
        let parts =
            [(QUEUES_READY, &self.queues), (DATABASES_READY, &self.databases), (CONFIG_PUBLISHED, &self.config)];
        let failing: Vec<_> = parts.iter().filter(|(_, p)| !p.is_ready()).collect();
        match failing.first() {
            None => Part::ready("Reconciled", "queues, databases and configuration match the spec"),
            Some((_, first)) => Part::failed(
                &first.reason,
                failing.iter().map(|(name, p)| format!("{name}: {}", p.message)).collect::<Vec<_>>().join("; "),
            ),
        }
    }
}

/// The four conditions after a reconcile whose overall result is `ready`.
/// `now` is an RFC 3339 time, used for conditions whose status changed.
pub fn conditions(
    previous: &[Condition],
    ready: &Part,
    parts: &Parts,
    generation: Option<i64>,
    now: &str,
) -> Vec<Condition> {
    [
        (READY, ready),
        (QUEUES_READY, &parts.queues),
        (DATABASES_READY, &parts.databases),
        (CONFIG_PUBLISHED, &parts.config),
    ]
    .into_iter()
    .map(|(type_, part)| {
        let status = part.status.as_str();
        let last_transition_time = previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map_or_else(|| now.to_owned(), |c| c.last_transition_time.clone());
        Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: part.reason.clone(),
            message: part.message.clone(),
            last_transition_time,
            observed_generation: generation,
        }
    })
    .collect()
}

/// The condition `type_` in `conditions`.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_ready() -> Parts {
        Parts {
            queues: Part::ready("QueuesReconciled", "4 queues"),
            databases: Part::ready("DatabasesReconciled", "2 databases"),
            config: Part::ready("Published", "1 ConfigMap, 2 Secrets"),
        }
    }

    #[test]
    fn a_fresh_pipeline_that_reconciled_is_ready_on_every_condition() {
        let parts = all_ready();
        let c = conditions(&[], &parts.ready(), &parts, Some(1), "2026-01-01T00:00:00Z");
        assert_eq!(
            c.iter().map(|c| (c.type_.as_str(), c.status.as_str())).collect::<Vec<_>>(),
            [(READY, "True"), (QUEUES_READY, "True"), (DATABASES_READY, "True"), (CONFIG_PUBLISHED, "True")]
        );
        assert!(c.iter().all(|c| c.last_transition_time == "2026-01-01T00:00:00Z" && c.observed_generation == Some(1)));
    }

    #[test]
    fn an_unchanged_outcome_keeps_the_transition_times() {
        let parts = all_ready();
        let first = conditions(&[], &parts.ready(), &parts, Some(1), "2026-01-01T00:00:00Z");
        let again = conditions(&first, &parts.ready(), &parts, Some(1), "2026-01-01T00:05:00Z");
        assert_eq!(first, again);
    }

    #[test]
    fn a_failing_part_makes_ready_false_with_its_reason_and_moves_only_its_own_time() {
        let before = all_ready();
        let first = conditions(&[], &before.ready(), &before, Some(1), "t0");
        let parts = Parts {
            databases: Part::failed("PostgresUnavailable", "connection refused"),
            config: Part::unknown("WaitingForDatabases", "published once the databases are ready"),
            ..before
        };
        let c = conditions(&first, &parts.ready(), &parts, Some(2), "t1");
        let ready = find(&c, READY).unwrap();
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "PostgresUnavailable"));
        assert_eq!(
            ready.message,
            "DatabasesReady: connection refused; ConfigPublished: published once the databases are ready"
        );
        assert_eq!(ready.last_transition_time, "t1");
        assert_eq!(find(&c, QUEUES_READY).unwrap().last_transition_time, "t0");
        assert_eq!(find(&c, DATABASES_READY).unwrap().last_transition_time, "t1");
    }

    #[test]
    fn an_invalid_spec_is_reported_on_ready_and_nothing_is_claimed_of_the_parts() {
        let parts = Parts::not_attempted("InvalidSpec", "the spec is invalid");
        let ready = Part::failed("InvalidSpec", "spec.queues.orders.name: must end in .fifo");
        let c = conditions(&[], &ready, &parts, Some(3), "t");
        assert_eq!(find(&c, READY).unwrap().message, "spec.queues.orders.name: must end in .fifo");
        assert_eq!(find(&c, QUEUES_READY).unwrap().status, "Unknown");
        assert_eq!(find(&c, CONFIG_PUBLISHED).unwrap().message, "not reconciled: the spec is invalid");
    }
}
