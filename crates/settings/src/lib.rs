//! Typed configuration from environment variables, validated at start-up.
//!
//! Each service describes its settings as one struct and fills it through an
//! [`Env`] reader. The reader never stops at the first problem: it collects every
//! missing or malformed variable, so an operator fixes a deployment in one go, and
//! every message names the variable. Secrets are read into [`SecretString`], whose
//! `Debug` output is redacted. This crate knows nothing of any service.

use std::{collections::HashMap, fmt::Display, str::FromStr, time::Duration};

pub use secrecy::{ExposeSecret, SecretString};

/// Reads variables from a source (the process environment, or a map in tests)
/// and remembers every problem until [`Env::finish`].
/// Where variables are read from.
type Source = Box<dyn Fn(&str) -> Option<String> + Send>;

pub struct Env {
    source: Source,
    errors: Vec<String>,
}

/// Start-up configuration was invalid; the message lists every bad variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

impl Env {
    /// Reads the process environment.
    pub fn from_process() -> Self {
        Self::from_fn(|name| std::env::var(name).ok())
    }

    /// Reads only the given pairs: for tests, which must not depend on the
    /// environment they happen to run in.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let map: HashMap<String, String> = pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        Self::from_fn(move |name| map.get(name).cloned())
    }

    fn from_fn(f: impl Fn(&str) -> Option<String> + Send + 'static) -> Self {
        Self { source: Box::new(f), errors: Vec::new() }
    }

    /// The raw value, with empty strings treated as unset.
    fn raw(&self, name: &str) -> Option<String> {
        (self.source)(name).filter(|v| !v.trim().is_empty())
    }

    fn parse<T: FromStr>(&mut self, name: &str, raw: String) -> Option<T>
    where
        T::Err: Display,
    {
        match raw.trim().parse() {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.push(format!("{name}: invalid value {raw:?}: {e}"));
                None
            }
        }
    }

    /// A value with a default used when the variable is unset.
    pub fn get<T: FromStr>(&mut self, name: &str, default: T) -> T
    where
        T::Err: Display,
    {
        match self.raw(name) {
            Some(raw) => self.parse(name, raw).unwrap_or(default),
            None => default,
        }
    }

    /// A value that may be absent.
    pub fn optional<T: FromStr>(&mut self, name: &str) -> Option<T>
    where
        T::Err: Display,
    {
        let raw = self.raw(name)?;
        self.parse(name, raw)
    }

    /// A value that must be present; its absence is recorded as an error.
    pub fn required<T: FromStr>(&mut self, name: &str, what: &str) -> Option<T>
    where
        T::Err: Display,
    {
        match self.raw(name) {
            Some(raw) => self.parse(name, raw),
            None => {
                self.errors.push(format!("{name}: required ({what})"));
                None
            }
        }
    }

    /// A secret that may be absent. Never echoed in errors.
    pub fn secret(&mut self, name: &str) -> Option<SecretString> {
        self.raw(name).map(SecretString::from)
    }

    /// A duration written as `250ms`, `10s`, `5m` or `1h` (see [`parse_duration`]).
    pub fn duration(&mut self, name: &str, default: Duration) -> Duration {
        match self.raw(name) {
            Some(raw) => match parse_duration(&raw) {
                Ok(d) => d,
                Err(e) => {
                    self.errors.push(format!("{name}: invalid duration {raw:?}: {e}"));
                    default
                }
            },
            None => default,
        }
    }

    /// A boolean written as true/false, 1/0, yes/no or on/off.
    pub fn flag(&mut self, name: &str, default: bool) -> bool {
        match self.raw(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => default,
            Some(v) if matches!(v.as_str(), "1" | "true" | "yes" | "on") => true,
            Some(v) if matches!(v.as_str(), "0" | "false" | "no" | "off") => false,
            Some(v) => {
                self.errors.push(format!("{name}: invalid boolean {v:?} (use true or false)"));
                default
            }
        }
    }

    /// Records a problem found by a cross-field check.
    pub fn invalid(&mut self, name: &str, message: impl Display) {
        self.errors.push(format!("{name}: {message}"));
    }

    /// Ends reading: `Err` lists every problem seen.
    pub fn finish(self) -> Result<(), ConfigError> {
        if self.errors.is_empty() { Ok(()) } else { Err(ConfigError(self.errors)) }
    }
}

/// The settings, or — for a binary's start-up — the error on stderr and exit
/// code 2, the conventional code for a usage error.
pub fn or_exit<T>(result: Result<T, ConfigError>, program: &str) -> T {
    result.unwrap_or_else(|e| {
        eprintln!("{program}: {e}");
        std::process::exit(2)
    })
}

/// Parses a duration the way every orderflow setting and tool writes one:
/// humantime's `250ms`, `10s`, `5m`, `1h`, `1h 30m`, `14days`, or a bare
/// whole number of seconds. A value too large to represent is an error, never
/// a wrapped or saturated duration.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        return raw.parse::<u64>().map(Duration::from_secs).map_err(|_| "number too large".to_owned());
    }
    humantime::parse_duration(raw).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_bad_variable_and_names_it() {
        let mut env = Env::from_pairs([("PORT", "eighty"), ("TIMEOUT", "3 fortnights"), ("DEBUG", "maybe")]);
        let port: u16 = env.get("PORT", 8080);
        let _ = env.duration("TIMEOUT", Duration::from_secs(1));
        let _ = env.flag("DEBUG", false);
        let _: Option<String> = env.required("DATABASE_URL", "the PostgreSQL connection string");
        assert_eq!(port, 8080);
        let err = env.finish().unwrap_err().to_string();
        for name in ["PORT", "TIMEOUT", "DEBUG", "DATABASE_URL"] {
            assert!(err.contains(name), "{name} missing from {err}");
        }
    }

    #[test]
    fn parses_values_and_durations() {
        let mut env = Env::from_pairs([("N", " 42 "), ("D", "250ms"), ("F", "yes"), ("EMPTY", "")]);
        assert_eq!(env.get::<u32>("N", 0), 42);
        assert_eq!(env.duration("D", Duration::ZERO), Duration::from_millis(250));
        assert!(env.flag("F", false));
        assert_eq!(env.optional::<u32>("EMPTY"), None);
        assert!(env.finish().is_ok());
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("1fortnight").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        // u64::MAX hours would wrap if multiplied unchecked.
        assert!(parse_duration("18446744073709551615h").is_err());
        assert!(parse_duration("99999999999999999999").is_err());
        let mut env = Env::from_pairs([("TTL", "18446744073709551615h")]);
        assert_eq!(env.duration("TTL", Duration::from_secs(1)), Duration::from_secs(1));
        assert!(env.finish().unwrap_err().to_string().contains("TTL"));
    }

    #[test]
    fn secrets_do_not_print() {
        let mut env = Env::from_pairs([("KEY", "hunter2")]);
        let secret = env.secret("KEY").unwrap();
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert_eq!(secret.expose_secret(), "hunter2");
    }
}
