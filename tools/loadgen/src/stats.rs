//! Summaries of a run: rates and latency percentiles, as one human line and
//! one JSON object.

use std::time::Duration;

use serde_json::{Value, json};

/// What a subcommand prints.
pub struct Report {
    pub human: String,
    pub json: Value,
}

/// Latency percentiles of a set of samples, in milliseconds.
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        Self(samples)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The `p`-quantile (0..=1) in milliseconds; 0 without samples.
    pub fn ms(&self, p: f64) -> f64 {
        let index = ((self.0.len() as f64 * p).ceil() as usize).saturating_sub(1);
        self.0.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    }
}

/// A report of `ok` requests (latencies), `errors` failures over `seconds`.
pub fn requests(what: &str, latencies: &Latencies, errors: u64, seconds: f64, extra: Value) -> Report {
    let rate = latencies.len() as f64 / seconds;
    let mut json = json!({
        "what": what,
        "ok": latencies.len(),
        "errors": errors,
        "seconds": seconds,
        "rate": rate,
        "p50_ms": latencies.ms(0.50),
        "p90_ms": latencies.ms(0.90),
        "p99_ms": latencies.ms(0.99),
        "max_ms": latencies.ms(1.0),
    });
    if let (Some(obj), Value::Object(more)) = (json.as_object_mut(), extra) {
        obj.extend(more);
    }
    let human = format!(
        "{what}: {} in {seconds:.1}s = {rate:.0}/s, {errors} errors; latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        latencies.ms(0.50),
        latencies.ms(0.90),
        latencies.ms(0.99),
        latencies.ms(1.0)
    );
    Report { human, json }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_sample_at_or_above_the_quantile() {
        let l = Latencies::new((1..=100).rev().map(Duration::from_millis).collect());
        assert_eq!(l.ms(0.5), 50.0);
        assert_eq!(l.ms(0.99), 99.0);
        assert_eq!(l.ms(1.0), 100.0);
        assert_eq!(Latencies::new(Vec::new()).ms(0.5), 0.0);
    }
}
