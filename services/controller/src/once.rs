//! `orderflow-controller reconcile-once --file F`: one reconcile without a
//! cluster. F is multi-document YAML with one OrderPipeline and the Secrets it
//! refers to (what `kubectl apply -f F` would take). The real SQS endpoint and
//! PostgreSQL server the spec names are reconciled exactly as in the cluster;
//! the ConfigMap and Secrets the controller would publish go to stdout as
//! multi-document YAML, and a status summary to stderr.
//!
//! Passwords are kept the way the controller keeps them in a cluster: in the
//! published Secrets. Here those Secrets are also written to a state file
//! (`--state`, by default `.<file name>.state` beside F, mode 0600), which
//! the next run reads back as the cluster's copies, so it generates nothing
//! new and, with nothing drifted, changes nothing. Lose the state file and the
//! next run sets new passwords on the existing roles (and says so).
//!
//! The key Secrets ([`crate::plan::keys`]) are kept the same way: made once
//! when neither the state file nor F has them, printed with the rest, and
//! never changed after.
//!
//! `--env-dir DIR` also writes each published object as `KEY='value'` lines
//! (`DIR/<object name>.env`), the environment `envFrom` would give a pod, and
//! each key Secret as files (`DIR/<secret name>/<key>`), as its volume would,
//! for scripts that start the services locally.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde::Deserialize;

use crate::{
    engine::{self, Inputs},
    plan::{
        conditions::{self, Part, Parts},
        databases::Service,
        keys::{Key, KeyPlan, plan_key},
        publish::{self, Owner, Published},
    },
    refs,
    resource::{API_VERSION, OrderPipeline},
    validate::validate,
};

/// Where to read and write.
#[derive(Debug, Clone)]
pub struct Args {
    pub file: PathBuf,
    /// The state file; `None` for the default beside `file`.
    pub state: Option<PathBuf>,
    pub env_dir: Option<PathBuf>,
}

/// A run that did not succeed, with the exit code to use.
#[derive(Debug, thiserror::Error)]
pub enum OnceError {
    /// The input is wrong (unreadable file, invalid spec, missing Secret): exit 2.
    #[error("{0}")]
    Input(String),
    /// Reconciling failed (SQS or PostgreSQL said no, or did not answer): exit 1.
    #[error("{0}")]
    Reconcile(String),
}

impl OnceError {
    pub fn exit_code(&self) -> i32 {
        match self {
            OnceError::Input(_) => 2,
            OnceError::Reconcile(_) => 1,
        }
    }
}

/// What a successful run produced.
#[derive(Debug)]
pub struct Report {
    /// The published objects as multi-document YAML (stdout).
    pub yaml: String,
    /// The status summary (stderr).
    pub summary: String,
    /// How many changes were made (0 on an idempotent re-run).
    pub changes: usize,
}

/// The default state file: `.<file name>.state` beside `file`.
pub fn default_state_path(file: &Path) -> PathBuf {
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "pipeline".into());
    file.with_file_name(format!(".{name}.state"))
}

/// The OrderPipeline and Secrets of a multi-document YAML file.
fn parse(text: &str, origin: &str) -> Result<(OrderPipeline, Vec<Secret>), OnceError> {
    let mut pipelines = Vec::new();
    let mut secrets = Vec::new();
    for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml::Value::deserialize(document)
            .map_err(|e| OnceError::Input(format!("{origin}: document {}: not YAML: {e}", i + 1)))?;
        if value.is_null() {
            continue;
        }
        let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or_default().to_owned();
        let api_version = value.get("apiVersion").and_then(|k| k.as_str()).unwrap_or_default().to_owned();
        match (api_version.as_str(), kind.as_str()) {
            (API_VERSION, "OrderPipeline") => pipelines.push(
                serde_yaml::from_value::<OrderPipeline>(value)
                    .map_err(|e| OnceError::Input(format!("{origin}: document {} (OrderPipeline): {e}", i + 1)))?,
            ),
            ("v1", "Secret") => secrets.push(
                serde_yaml::from_value::<Secret>(value)
                    .map_err(|e| OnceError::Input(format!("{origin}: document {} (Secret): {e}", i + 1)))?,
            ),
            _ => eprintln!(
                "{origin}: document {}: skipping {api_version} {kind} (only OrderPipelines and Secrets are read)",
                i + 1
            ),
        }
    }
    match pipelines.len() {
        1 => Ok((pipelines.remove(0), secrets)),
        n => Err(OnceError::Input(format!("{origin}: expected one {API_VERSION} OrderPipeline, found {n}"))),
    }
}

/// The Secrets kept by an earlier run (none when the file does not exist).
fn read_state(path: &Path) -> Result<Vec<Secret>, OnceError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(OnceError::Input(format!("cannot read the state file {}: {e}", path.display()))),
    };
    serde_yaml::Deserializer::from_str(&text).map(Secret::deserialize).collect::<Result<Vec<_>, _>>().map_err(|e| {
        OnceError::Input(format!("the state file {} is damaged ({e}); move it away to start afresh", path.display()))
    })
}

fn yaml_documents(docs: impl IntoIterator<Item = serde_yaml::Value>) -> String {
    docs.into_iter()
        .map(|d| serde_yaml::to_string(&d).expect("objects serialise to YAML"))
        .collect::<Vec<_>>()
        .join("---\n")
}

fn to_value<T: serde::Serialize>(object: &T, api_version: &str, kind: &str) -> serde_yaml::Value {
    let mut value = serde_yaml::to_value(object).expect("objects serialise");
    if let serde_yaml::Value::Mapping(map) = &mut value {
        // apiVersion, kind and metadata first, as people write them.
        let mut ordered = serde_yaml::Mapping::new();
        ordered.insert("apiVersion".into(), api_version.into());
        ordered.insert("kind".into(), kind.into());
        let mut rest = std::mem::take(map);
        if let Some(metadata) = rest.remove("metadata") {
            ordered.insert("metadata".into(), metadata);
        }
        for (k, v) in rest {
            if k != "apiVersion" && k != "kind" {
                ordered.insert(k, v);
            }
        }
        *map = ordered;
    }
    value
}

/// The published objects, then the key Secrets, as YAML documents.
pub fn published_yaml(published: &Published, keys: &[Secret]) -> String {
    yaml_documents(
        [
            to_value(&published.config, "v1", "ConfigMap"),
            to_value(&published.orders_db, "v1", "Secret"),
            to_value(&published.delivery_db, "v1", "Secret"),
        ]
        .into_iter()
        .chain(keys.iter().map(|s| to_value(s, "v1", "Secret"))),
    )
}

/// Writes `contents` to `path` through a temporary file (mode 0600: it holds passwords).
fn write_private(path: &Path, contents: &str) -> Result<(), OnceError> {
    use std::io::Write as _;
    let fail = |e: std::io::Error| OnceError::Reconcile(format!("cannot write {}: {e}", path.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(fail)?;
    file.write_all(contents.as_bytes()).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// `KEY='value'` lines, quoted for POSIX shells.
fn env_lines(data: &BTreeMap<String, String>) -> String {
    data.iter().fold(String::new(), |mut out, (k, v)| {
        let _ = writeln!(out, "{k}='{}'", v.replace('\'', r"'\''"));
        out
    })
}

/// Each key of each Secret as the file `DIR/<secret name>/<key>`, as a pod's Secret volume holds it.
fn write_key_files(dir: &Path, keys: &[Secret]) -> Result<(), OnceError> {
    for secret in keys {
        let name = secret.metadata.name.clone().unwrap_or_default();
        for (key, value) in secret.data.iter().flatten() {
            write_private(&dir.join(&name).join(key), &String::from_utf8_lossy(&value.0))?;
        }
    }
    Ok(())
}

fn write_env_dir(dir: &Path, published: &Published) -> Result<(), OnceError> {
    let config = published.config.data.clone().unwrap_or_default();
    let name =
        |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| meta.name.clone().unwrap_or_default();
    write_private(&dir.join(format!("{}.env", name(&published.config.metadata))), &env_lines(&config))?;
    for secret in [&published.orders_db, &published.delivery_db] {
        let data: BTreeMap<String, String> = secret
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
            .collect();
        write_private(&dir.join(format!("{}.env", name(&secret.metadata))), &env_lines(&data))?;
    }
    Ok(())
}

fn secret_name(pipeline: &str, service: Service) -> Option<String> {
    Some(match service {
        Service::Orders => OrderPipeline::orders_secret_name(pipeline),
        Service::Delivery => OrderPipeline::delivery_secret_name(pipeline),
    })
}

/// Runs one reconcile of the pipeline in `args.file`.
pub async fn run(args: &Args) -> Result<Report, OnceError> {
    let origin = args.file.display().to_string();
    let text =
        std::fs::read_to_string(&args.file).map_err(|e| OnceError::Input(format!("cannot read {origin}: {e}")))?;
    let (pipeline, secrets) = parse(&text, &origin)?;
    let name = pipeline
        .metadata
        .name
        .clone()
        .ok_or_else(|| OnceError::Input(format!("{origin}: the OrderPipeline has no metadata.name")))?;
    let namespace = pipeline.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let spec = &pipeline.spec;
    validate(spec)
        .map_err(|e| OnceError::Input(format!("{origin}: OrderPipeline {namespace}/{name} is invalid: {e}")))?;

    let in_namespace = |n: &str| {
        secrets
            .iter()
            .find(|s| {
                s.metadata.name.as_deref() == Some(n)
                    && s.metadata.namespace.as_deref().unwrap_or("default") == namespace
            })
            .cloned()
    };
    let (admin, sqs_credentials) =
        refs::credentials(spec, &namespace, in_namespace).map_err(|e| OnceError::Input(format!("{origin}: {e}")))?;

    let state_path = args.state.clone().unwrap_or_else(|| default_state_path(&args.file));
    let kept = read_state(&state_path)?;
    let mut kept_passwords = BTreeMap::new();
    for service in Service::BOTH {
        if let Some(password) = kept
            .iter()
            .find(|s| s.metadata.name == secret_name(&name, service))
            .and_then(|s| publish::kept_password(s, &service.spec(spec).role))
        {
            kept_passwords.insert(service, password);
        }
    }

    let owner = Owner { name: name.clone(), namespace: namespace.clone(), uid: pipeline.metadata.uid.clone() };
    let (keys, key_changes) = keys(&owner, |n| {
        kept.iter().find(|s| s.metadata.name.as_deref() == Some(n)).cloned().or_else(|| in_namespace(n).map(as_stored))
    })
    .map_err(|e| OnceError::Input(format!("{origin}: {e}")))?;

    let mut outcome = engine::reconcile(spec, &Inputs { admin, sqs_credentials, kept_passwords }).await;
    outcome.changes.extend(key_changes);
    let (queues, databases) = outcome.parts();
    let published = outcome.succeeded().then(|| publish::desired(&owner, spec, &outcome.passwords));
    let config = match &published {
        Some(_) => Part::ready("Published", "printed on stdout"),
        None => Part::unknown("WaitingForDependencies", "published once the queues and databases are ready"),
    };
    let parts = Parts { queues, databases, config };
    let ready = parts.ready();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let conditions = conditions::conditions(&[], &ready, &parts, pipeline.metadata.generation, &now);

    let mut summary = format!("OrderPipeline {namespace}/{name}:\n");
    for c in &conditions {
        let _ = writeln!(summary, "  {:<16} {:<7} {}: {}", c.type_, c.status, c.reason, c.message);
    }
    if outcome.changes.is_empty() {
        summary.push_str("  no changes: everything already matched the spec\n");
    } else {
        let _ = writeln!(summary, "  {} change(s):", outcome.changes.len());
        for change in &outcome.changes {
            let _ = writeln!(summary, "    {:<18} {}", change.reason, change.message);
        }
    }

    // Keep every password that is now set in PostgreSQL, even when another part failed.
    let mut state_secrets = Vec::new();
    for service in Service::BOTH {
        match outcome.passwords.get(&service) {
            Some(password) => state_secrets.push(publish::secret(&owner, spec, service, password)),
            None => state_secrets.extend(kept.iter().find(|s| s.metadata.name == secret_name(&name, service)).cloned()),
        }
    }
    state_secrets.extend(keys.iter().cloned());
    let state = yaml_documents(state_secrets.iter().map(|s| to_value(s, "v1", "Secret")));
    let kept_before = yaml_documents(kept.iter().map(|s| to_value(s, "v1", "Secret")));
    if state != kept_before {
        write_private(&state_path, &state)?;
    }
    let Some(published) = published else {
        let failure = outcome.failure().map(|f| f.message.clone()).unwrap_or_default();
        return Err(OnceError::Reconcile(format!("{summary}reconcile failed: {failure}")));
    };
    if let Some(dir) = &args.env_dir {
        write_env_dir(dir, &published)?;
        write_key_files(dir, &keys)?;
    }
    Ok(Report { yaml: published_yaml(&published, &keys), summary, changes: outcome.changes.len() })
}

/// `secret` as the API server stores it: `stringData` (what people write in
/// files) merged into `data`, winning over a key of the same name.
fn as_stored(mut secret: Secret) -> Secret {
    if let Some(strings) = secret.string_data.take() {
        let data = secret.data.get_or_insert_default();
        data.extend(strings.into_iter().map(|(k, v)| (k, k8s_openapi::ByteString(v.into_bytes()))));
    }
    secret
}

/// The key Secrets as the services will find them: the one `find` gives
/// (the state file's, else the input file's) kept as it is, an absent one
/// made, with a change for each made; an unusable one is an error.
fn keys(owner: &Owner, find: impl Fn(&str) -> Option<Secret>) -> Result<(Vec<Secret>, Vec<engine::Change>), String> {
    let mut keys = Vec::new();
    let mut changes = Vec::new();
    for key in Key::ALL {
        let live = find(&key.secret_name(&owner.name));
        match plan_key(owner, key, live.as_ref()) {
            KeyPlan::Keep => keys.extend(live),
            KeyPlan::Create(secret) => {
                keys.push(*secret);
                let message = crate::plan::keys::describe_created(owner, key);
                changes.push(engine::Change { reason: "KeyCreated", message });
            }
            KeyPlan::Unusable(message) => return Err(message),
        }
    }
    Ok((keys, changes))
}

/// The published ConfigMap and Secrets of a `reconcile-once` output, for
/// scripts and tests that turn them into environment variables.
pub fn parse_published(yaml: &str) -> Result<(ConfigMap, Vec<Secret>), String> {
    let mut config = None;
    let mut secrets = Vec::new();
    for document in serde_yaml::Deserializer::from_str(yaml) {
        let value = serde_yaml::Value::deserialize(document).map_err(|e| e.to_string())?;
        match value.get("kind").and_then(|k| k.as_str()) {
            Some("ConfigMap") => config = Some(serde_yaml::from_value(value).map_err(|e| e.to_string())?),
            Some("Secret") => secrets.push(serde_yaml::from_value(value).map_err(|e| e.to_string())?),
            other => return Err(format!("unexpected document kind {other:?}")),
        }
    }
    Ok((config.ok_or("no ConfigMap")?, secrets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_file_sits_hidden_beside_the_input() {
        assert_eq!(
            default_state_path(Path::new("k8s/examples/local.yaml")),
            PathBuf::from("k8s/examples/.local.yaml.state")
        );
    }

    #[test]
    fn a_file_needs_exactly_one_pipeline() {
        let err = parse("apiVersion: v1\nkind: Secret\nmetadata: {name: a}\n", "f.yaml").unwrap_err();
        assert_eq!(err.to_string(), "f.yaml: expected one orderflow.dev/v1alpha1 OrderPipeline, found 0");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn unknown_spec_fields_are_errors_not_silently_dropped() {
        let text = "apiVersion: orderflow.dev/v1alpha1\nkind: OrderPipeline\nmetadata: {name: a}\nspec:\n  deletionPolicyy: Delete\n";
        let err = parse(text, "f.yaml").unwrap_err().to_string();
        assert!(err.contains("unknown field `deletionPolicyy`"), "{err}");
    }

    #[test]
    fn key_secrets_are_made_once_and_then_kept_as_found() {
        let owner = Owner { name: "demo".into(), namespace: "default".into(), uid: None };
        let (made, changes) = keys(&owner, |_| None).unwrap();
        let names: Vec<_> = made.iter().map(|s| s.metadata.name.clone().unwrap()).collect();
        assert_eq!(names, ["demo-jwt", "demo-client-secret-key"]);
        assert_eq!(changes.iter().map(|c| c.reason).collect::<Vec<_>>(), ["KeyCreated", "KeyCreated"]);
        let (kept, changes) =
            keys(&owner, |n| made.iter().find(|s| s.metadata.name.as_deref() == Some(n)).cloned()).unwrap();
        assert_eq!(kept, made);
        assert!(changes.is_empty());
        let broken = crate::plan::keys::key_secret(&owner, Key::Signing, "not a key");
        let err = keys(&owner, |_| Some(broken.clone())).unwrap_err();
        assert!(err.starts_with("Secret demo-jwt jwt.pem: no PEM block"), "{err}");
    }

    #[test]
    fn env_values_are_quoted_for_the_shell() {
        let data = BTreeMap::from([
            ("A".to_owned(), "x'y z".to_owned()),
            ("B".to_owned(), "postgres://u:p@h/d?x=1&y=2".to_owned()),
        ]);
        assert_eq!(env_lines(&data), "A='x'\\''y z'\nB='postgres://u:p@h/d?x=1&y=2'\n");
    }
}
