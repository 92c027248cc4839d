//! Typed configuration from environment variables, validated at start-up.
//!
//! Each service describes its settings as one struct and fills it through an
//! [`Env`] reader. The reader never stops at the first problem: it collects every
//! missing or malformed variable, so an operator fixes a deployment in one go, and
//! every message names the variable. Secrets are read into [`SecretString`], whose
//! `Debug` output is redacted; a secret may also come from a file (`X_FILE`).
//! What the reader reads, joined with each crate's [`Doc`] table, is the
//! generated configuration reference ([`reference`]). This crate knows nothing
//! of any service.

mod env;
pub mod reference;

use std::time::Duration;

pub use env::{ConfigError, Env, Recorder};
pub use reference::Doc;
pub use secrecy::{ExposeSecret, SecretString};

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
    fn a_secret_comes_from_its_variable_or_from_the_file_its_file_variable_names() {
        let dir = std::env::temp_dir().join(format!("settings-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        std::fs::write(&path, "  from-file\n").unwrap();
        let path = path.to_str().unwrap().to_owned();
        let mut env = Env::from_pairs([("A", "direct"), ("B_FILE", path.as_str())]);
        assert_eq!(env.secret_or_file("A").unwrap().expose_secret(), "direct");
        assert_eq!(env.secret_or_file("B").unwrap().expose_secret(), "from-file");
        assert!(env.secret_or_file("C").is_none());
        assert!(env.finish().is_ok());

        let mut env = Env::from_pairs([("A", "x"), ("A_FILE", path.as_str()), ("B_FILE", "/nonexistent/key")]);
        assert!(env.secret_or_file("A").is_none());
        assert!(env.secret_or_file("B").is_none());
        let err = env.finish().unwrap_err().to_string();
        assert!(err.contains("A_FILE: set either A or A_FILE, not both"), "{err}");
        assert!(err.contains("B_FILE: cannot read /nonexistent/key"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn secrets_do_not_print() {
        let mut env = Env::from_pairs([("KEY", "hunter2")]);
        let secret = env.secret("KEY").unwrap();
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert_eq!(secret.expose_secret(), "hunter2");
    }
}
