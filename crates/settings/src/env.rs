//! The reader every service fills its settings through: typed getters that
//! collect every problem instead of stopping at the first, and that record what
//! they read (name, default, required, secret), so the configuration reference
//! is generated from the code that reads the variables ([`crate::reference`]).

use std::{
    collections::HashMap,
    fmt::Display,
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration,
};

use secrecy::SecretString;

use crate::{parse_duration, reference::Read};

/// Where variables are read from.
type Source = Box<dyn Fn(&str) -> Option<String> + Send>;

/// Reads variables from a source (the process environment, or a map in tests)
/// and remembers every problem until [`Env::finish`].
pub struct Env {
    source: Source,
    errors: Vec<String>,
    reads: Recorder,
}

/// Start-up configuration was invalid; the message lists every bad variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

/// What an [`Env`] has read so far, in first-read order; shared, so that it
/// outlives an `Env` consumed by a settings constructor that failed.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<Read>>>);

impl Recorder {
    fn note(&self, read: Read) {
        let mut reads = self.0.lock().expect("recorder lock");
        if !reads.iter().any(|r| r.name == read.name) {
            reads.push(read);
        }
    }

    /// Every variable read, each once.
    pub fn reads(&self) -> Vec<Read> {
        self.0.lock().expect("recorder lock").clone()
    }
}

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
        Self { source: Box::new(f), errors: Vec::new(), reads: Recorder::default() }
    }

    /// A handle on what this reader reads, to look at after it is consumed.
    pub fn recorder(&self) -> Recorder {
        self.reads.clone()
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
    pub fn get<T: FromStr + Display>(&mut self, name: &str, default: T) -> T
    where
        T::Err: Display,
    {
        self.reads.note(Read::with_default(name, default.to_string()));
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
        self.reads.note(Read::unset(name));
        let raw = self.raw(name)?;
        self.parse(name, raw)
    }

    /// A value that must be present; its absence is recorded as an error.
    pub fn required<T: FromStr>(&mut self, name: &str, what: &str) -> Option<T>
    where
        T::Err: Display,
    {
        self.reads.note(Read::required(name));
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
        self.reads.note(Read::unset(name).secret());
        self.raw(name).map(SecretString::from)
    }

    /// A secret with a default when unset (a local connection string without
    /// a password, shown as such in the reference).
    pub fn secret_or(&mut self, name: &str, default: &str) -> SecretString {
        self.reads.note(Read::with_default(name, default.to_owned()).secret());
        self.raw(name).unwrap_or_else(|| default.to_owned()).into()
    }

    /// A secret given either as `name` itself or as the path of a file in
    /// `name_FILE` (a mounted Secret), surrounding whitespace trimmed; both set,
    /// or a file that cannot be read, is an error named after `name_FILE`.
    pub fn secret_or_file(&mut self, name: &str) -> Option<SecretString> {
        self.reads.note(Read::unset(name).secret().or_file());
        self.value_or_file(name).ok().flatten()
    }

    /// [`Env::secret_or_file`] that must be set one way or the other; its
    /// absence is recorded as an error saying `what` it is.
    pub fn required_secret_or_file(&mut self, name: &str, what: &str) -> Option<SecretString> {
        self.reads.note(Read::required(name).secret().or_file());
        match self.value_or_file(name) {
            Ok(Some(secret)) => Some(secret),
            Ok(None) => {
                self.errors.push(format!("{name}: required ({what}), or set {name}_FILE"));
                None
            }
            Err(()) => None,
        }
    }

    /// `Err` when the error is already recorded.
    fn value_or_file(&mut self, name: &str) -> Result<Option<SecretString>, ()> {
        let file_var = format!("{name}_FILE");
        match (self.raw(name), self.raw(&file_var)) {
            (Some(value), None) => Ok(Some(SecretString::from(value.trim().to_owned()))),
            (None, Some(path)) => match std::fs::read_to_string(path.trim()) {
                Ok(contents) => Ok(Some(SecretString::from(contents.trim().to_owned()))),
                Err(e) => {
                    self.errors.push(format!("{file_var}: cannot read {}: {e}", path.trim()));
                    Err(())
                }
            },
            (Some(_), Some(_)) => {
                self.errors.push(format!("{file_var}: set either {name} or {file_var}, not both"));
                Err(())
            }
            (None, None) => Ok(None),
        }
    }

    /// A duration written as `250ms`, `10s`, `5m` or `1h` (see [`parse_duration`]).
    pub fn duration(&mut self, name: &str, default: Duration) -> Duration {
        self.reads.note(Read::with_default(name, humantime::format_duration(default).to_string()));
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
        self.reads.note(Read::with_default(name, default.to_string()));
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
