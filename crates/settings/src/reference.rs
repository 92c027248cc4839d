//! The configuration reference, generated from the code that reads the
//! variables: an [`crate::Env`] records each variable it reads with its default
//! ([`Read`]); each crate that reads variables describes them once ([`Doc`]:
//! who sets it, what it means); [`render`] joins the two into the Markdown of
//! docs/CONFIGURATION.md and [`undocumented`] names every read without a
//! description, so the reference cannot drift from the code.

use std::fmt::Write as _;

/// Who a variable is for: the reference lists each group apart, and the
/// README's configuration section lists only the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Set by whoever deploys it: where the dependencies are, the keys, the
    /// few limits that depend on the deployment.
    Deployer,
    /// Has a default that suits most deployments; change it when a runbook or
    /// a measurement says so.
    Tuning,
    /// Switches for tests, benchmarks and the chart's split of roles into
    /// Deployments; not something to set by hand.
    Development,
}

/// One variable's description, declared beside the code that reads it.
#[derive(Debug, Clone, Copy)]
pub struct Doc {
    pub name: &'static str,
    pub audience: Audience,
    pub meaning: &'static str,
}

impl Doc {
    pub const fn deployer(name: &'static str, meaning: &'static str) -> Self {
        Self { name, audience: Audience::Deployer, meaning }
    }
    pub const fn tuning(name: &'static str, meaning: &'static str) -> Self {
        Self { name, audience: Audience::Tuning, meaning }
    }
    pub const fn development(name: &'static str, meaning: &'static str) -> Self {
        Self { name, audience: Audience::Development, meaning }
    }
}

/// What a variable is when it is not set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Default {
    Value(String),
    Unset,
    Required,
}

/// One variable as an [`crate::Env`] read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub name: String,
    pub default: Default,
    pub secret: bool,
    /// Also read from a file named by `<name>_FILE`.
    pub or_file: bool,
}

impl Read {
    pub(crate) fn with_default(name: &str, value: String) -> Self {
        Self::new(name, Default::Value(value))
    }
    pub(crate) fn unset(name: &str) -> Self {
        Self::new(name, Default::Unset)
    }
    pub(crate) fn required(name: &str) -> Self {
        Self::new(name, Default::Required)
    }
    fn new(name: &str, default: Default) -> Self {
        Self { name: name.to_owned(), default, secret: false, or_file: false }
    }
    pub(crate) fn secret(mut self) -> Self {
        self.secret = true;
        self
    }
    pub(crate) fn or_file(mut self) -> Self {
        self.or_file = true;
        self
    }
}

/// One process (or role) of the reference: what it reads, in reading order.
pub struct Section<'a> {
    pub title: &'a str,
    pub intro: &'a str,
    pub reads: Vec<Read>,
}

/// The description of `name`, from the first table that has one.
fn find<'d>(docs: &[&'d [Doc]], name: &str) -> Option<&'d Doc> {
    docs.iter().flat_map(|table| table.iter()).find(|d| d.name == name)
}

/// Every read of every section without a description, and every description
/// no section reads (a variable the code no longer reads).
pub fn undocumented(sections: &[Section<'_>], docs: &[&[Doc]]) -> Vec<String> {
    let mut problems: Vec<String> = sections
        .iter()
        .flat_map(|s| s.reads.iter().map(move |r| (s.title, &r.name)))
        .filter(|(_, name)| find(docs, name).is_none())
        .map(|(title, name)| format!("{title} reads {name}, which no settings::Doc describes"))
        .collect();
    for doc in docs.iter().flat_map(|table| table.iter()) {
        if !sections.iter().any(|s| s.reads.iter().any(|r| r.name == doc.name)) {
            problems.push(format!("{} is described but nothing reads it", doc.name));
        }
    }
    problems
}

/// The names a deployer sets, over every section, each once.
pub fn deployer_names(sections: &[Section<'_>], docs: &[&[Doc]]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for read in sections.iter().flat_map(|s| &s.reads) {
        let deployer = find(docs, &read.name).is_some_and(|d| d.audience == Audience::Deployer);
        if deployer && !names.contains(&read.name) {
            names.push(read.name.clone());
        }
    }
    names
}

const GROUPS: [(Audience, &str); 3] = [
    (Audience::Deployer, "What a deployer sets"),
    (Audience::Tuning, "Tuning"),
    (Audience::Development, "Development and test switches"),
];

/// The Markdown of the sections, one table per audience in each.
pub fn render(sections: &[Section<'_>], docs: &[&[Doc]]) -> String {
    let mut out = String::new();
    for section in sections {
        let _ = write!(out, "## {}\n\n{}\n", section.title, section.intro);
        for (audience, heading) in GROUPS {
            let rows: Vec<String> = section
                .reads
                .iter()
                .filter_map(|r| find(docs, &r.name).filter(|d| d.audience == audience).map(|d| row(r, d)))
                .collect();
            if !rows.is_empty() {
                let _ = write!(out, "\n### {heading}\n\n| variable | default | meaning |\n|---|---|---|\n");
                rows.iter().for_each(|r| out.push_str(r));
            }
        }
        out.push('\n');
    }
    out
}

fn row(read: &Read, doc: &Doc) -> String {
    let name = if read.or_file { format!("`{0}` / `{0}_FILE`", read.name) } else { format!("`{}`", read.name) };
    let default = match &read.default {
        Default::Value(v) if v.is_empty() => "empty".to_owned(),
        Default::Value(v) => format!("`{v}`"),
        Default::Unset => "unset".to_owned(),
        Default::Required => "required".to_owned(),
    };
    let secret = if read.secret { " (secret: never logged)" } else { "" };
    format!("| {name} | {default} | {}{secret} |\n", doc.meaning)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Env;

    const DOCS: &[Doc] = &[
        Doc::deployer("DATABASE_URL", "the database"),
        Doc::tuning("TIMEOUT", "how long to wait"),
        Doc::development("FAST", "skip the slow part"),
        Doc::deployer("KEY", "the signing key"),
    ];

    fn section() -> Section<'static> {
        let mut env = Env::from_pairs([("TIMEOUT", "3s")]);
        let recorder = env.recorder();
        let _: Option<String> = env.required("DATABASE_URL", "the database");
        let _ = env.duration("TIMEOUT", Duration::from_millis(250));
        let _ = env.duration("TIMEOUT", Duration::from_secs(9));
        let _ = env.flag("FAST", false);
        let _ = env.secret_or_file("KEY");
        let _ = env.finish();
        Section { title: "svc", intro: "The service.", reads: recorder.reads() }
    }

    #[test]
    fn the_reference_shows_each_variable_once_with_its_default_by_audience() {
        let text = render(&[section()], &[DOCS]);
        assert_eq!(
            text,
            "## svc\n\nThe service.\n\n### What a deployer sets\n\n| variable | default | meaning |\n|---|---|---|\n\
             | `DATABASE_URL` | required | the database |\n\
             | `KEY` / `KEY_FILE` | unset | the signing key (secret: never logged) |\n\
             \n### Tuning\n\n| variable | default | meaning |\n|---|---|---|\n| `TIMEOUT` | `250ms` | how long to wait |\n\
             \n### Development and test switches\n\n| variable | default | meaning |\n|---|---|---|\n\
             | `FAST` | `false` | skip the slow part |\n\n"
        );
        assert_eq!(deployer_names(&[section()], &[DOCS]), ["DATABASE_URL", "KEY"]);
    }

    #[test]
    fn a_read_without_a_description_and_a_description_without_a_read_are_both_named() {
        let docs: &[Doc] = &[Doc::tuning("TIMEOUT", "t"), Doc::tuning("GONE", "g")];
        let problems = undocumented(&[section()], &[docs]);
        assert!(problems.iter().any(|p| p.contains("DATABASE_URL") && p.contains("no settings::Doc")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("GONE") && p.contains("nothing reads")), "{problems:?}");
        assert!(!problems.iter().any(|p| p.contains("TIMEOUT")), "{problems:?}");
        assert!(undocumented(&[section()], &[DOCS]).is_empty());
    }
}
