//! Declaring metrics once. Each binary (and each shared crate that records
//! metrics on its behalf) lists its metrics as [`Metric`] constants in one
//! `metrics` module: name, kind, help and label names. Code records through
//! those constants, giving only label *values* in the declared order, so a name
//! or a label key is written exactly once, `/metrics` carries the help text,
//! and a test can hold docs/OBSERVABILITY.md's metrics table to the declarations.

/// What a metric measures over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric's declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    /// Label names, in the order values are given when recording.
    pub labels: &'static [&'static str],
}

impl Metric {
    pub const fn counter(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Self { name, kind: Kind::Counter, help, labels }
    }

    pub const fn gauge(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Self { name, kind: Kind::Gauge, help, labels }
    }

    pub const fn histogram(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Self { name, kind: Kind::Histogram, help, labels }
    }

    /// Registers the help text with the recorder (shown as `# HELP`).
    pub fn describe(&self) {
        match self.kind {
            Kind::Counter => metrics::describe_counter!(self.name, self.help),
            Kind::Gauge => metrics::describe_gauge!(self.name, self.help),
            Kind::Histogram => metrics::describe_histogram!(self.name, self.help),
        }
    }

    fn labels(&self, values: &[&str]) -> Vec<metrics::Label> {
        debug_assert_eq!(
            values.len(),
            self.labels.len(),
            "{}: label values {values:?} for {:?}",
            self.name,
            self.labels
        );
        self.labels.iter().zip(values).map(|(k, v)| metrics::Label::new(*k, (*v).to_owned())).collect()
    }

    /// The counter with these label values (in declaration order).
    pub fn counter_with(&self, values: &[&str]) -> metrics::Counter {
        debug_assert_eq!(self.kind, Kind::Counter, "{} is not a counter", self.name);
        metrics::counter!(self.name, self.labels(values))
    }

    /// The gauge with these label values (in declaration order).
    pub fn gauge_with(&self, values: &[&str]) -> metrics::Gauge {
        debug_assert_eq!(self.kind, Kind::Gauge, "{} is not a gauge", self.name);
        metrics::gauge!(self.name, self.labels(values))
    }

    /// The histogram with these label values (in declaration order).
    pub fn histogram_with(&self, values: &[&str]) -> metrics::Histogram {
        debug_assert_eq!(self.kind, Kind::Histogram, "{} is not a histogram", self.name);
        metrics::histogram!(self.name, self.labels(values))
    }

    /// Sets this one-label gauge for every value in `all`: its count in
    /// `counts`, or 0 when absent (a status with no rows still has a series).
    pub fn set_counts(&self, all: &[&str], counts: &[(String, i64)]) {
        for value in all {
            let n = counts.iter().find(|(v, _)| v == value).map_or(0, |(_, n)| *n);
            self.gauge_with(&[value]).set(n as f64);
        }
    }

    /// The counter without labels.
    pub fn as_counter(&self) -> metrics::Counter {
        self.counter_with(&[])
    }

    /// The gauge without labels.
    pub fn as_gauge(&self) -> metrics::Gauge {
        self.gauge_with(&[])
    }

    /// The histogram without labels.
    pub fn as_histogram(&self) -> metrics::Histogram {
        self.histogram_with(&[])
    }
}

/// Installs the process's recorder (if not yet), describes every metric in
/// `metrics`, and registers at zero those without labels, so a dashboard sees a
/// series (at 0) before the first event. Call it before recording anything:
/// what is recorded before the recorder exists is lost.
pub fn declare(metrics: &[Metric]) {
    crate::Metrics::global();
    for m in metrics {
        m.describe();
        if m.labels.is_empty() {
            match m.kind {
                Kind::Counter => m.as_counter().increment(0),
                Kind::Gauge => {
                    let _ = m.as_gauge();
                }
                Kind::Histogram => {
                    let _ = m.as_histogram();
                }
            }
        }
    }
}
