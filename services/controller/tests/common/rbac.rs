//! RBAC as the API server applies it, so that the mocked API server refuses
//! what a real one would: every request a test sees is turned into the
//! authorization attributes kube-apiserver derives from it (verb, API group,
//! resource, subresource, namespace, name) and checked against the rules the
//! chart renders into the Role (charts/orderflow/files/*-rules.yaml, which
//! templates/ and k8s/controller/rbac.yaml are held equal to by the chart
//! tests). A new API call without its permission fails the test that makes it.
//!
//! The rules encoded, each where Kubernetes defines it:
//! - verb from method and path: GET on a name is `get`, on a collection
//!   `list`, with `watch=true` `watch`; POST `create`; PUT `update`; PATCH
//!   `patch`; DELETE `delete`/`deletecollection`
//!   (<https://kubernetes.io/docs/reference/access-authn-authz/authorization/#determine-the-request-verb>);
//! - a rule matches on verb, group, `resource` or `resource/subresource`, and
//!   `resourceNames` when it has them, `*` matching anything
//!   (kubernetes pkg/apis/rbac/v1/evaluation_helpers.go: `VerbMatches`,
//!   `APIGroupMatches`, `ResourceMatches`, `ResourceNameMatches`);
//! - a Role grants nothing outside its namespace, nor on cluster-scoped
//!   resources or non-resource URLs;
//! - a server-side apply that may create its object is also authorized as
//!   `create` (apiserver endpoints/handlers/patch.go: `createAuthorizerAttributes`);
//! - setting `ownerReferences` needs `delete` on the object itself, and
//!   `blockOwnerDeletion: true` needs `update` on the owner's `finalizers`
//!   (plugin/pkg/admission/gc/gc_admission.go, the
//!   OwnerReferencesPermissionEnforcement admission plugin, on in OpenShift
//!   and hardened clusters).

use std::path::PathBuf;

use http::Method;
use k8s_openapi::api::rbac::v1::PolicyRule;
use serde_json::Value;

/// What the authorizer is asked about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl std::fmt::Display for Attributes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let resource = if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        };
        let group = if self.group.is_empty() { "core" } else { &self.group };
        write!(f, "{} {resource} ({group})", self.verb)?;
        if let Some(name) = &self.name {
            write!(f, " {name}")?;
        }
        match &self.namespace {
            Some(ns) => write!(f, " in namespace {ns}"),
            None => write!(f, " (cluster-scoped)"),
        }
    }
}

/// A request as the mocked API server saw it.
pub struct Request<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: &'a str,
    pub content_type: &'a str,
    pub body: &'a Value,
}

/// A request as the mocked API server received it, read once and owned, so a
/// scenario can both authorize it ([`Received::as_request`]) and answer it.
pub struct Received {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

impl Received {
    pub async fn read(request: http::Request<kube::client::Body>) -> Self {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or_default().to_owned();
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        Received { method, path, query, content_type, body }
    }

    pub fn as_request(&self) -> Request<'_> {
        Request {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            content_type: &self.content_type,
            body: &self.body,
        }
    }
}

/// The rules of one Role, bound in one namespace.
#[derive(Debug, Clone)]
pub struct Role {
    pub file: &'static str,
    pub namespace: String,
    pub rules: Vec<PolicyRule>,
}

const PIPELINE_NAME_EXPR: &str = "{{ include \"orderflow.pipelineName\" . }}";

fn rules_file(file: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../charts/orderflow/files").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

impl Role {
    /// The controller's Role (charts/orderflow/files/controller-rules.yaml).
    pub fn controller(namespace: &str) -> Self {
        Self::parse("controller-rules.yaml", namespace, &rules_file("controller-rules.yaml"))
    }

    /// The uninstall hook's Role, rendered for the chart's pipeline `pipeline`
    /// (the file names it with the template expression the chart fills in).
    pub fn uninstall_hook(namespace: &str, pipeline: &str) -> Self {
        let text = rules_file("uninstall-hook-rules.yaml");
        assert!(text.contains(PIPELINE_NAME_EXPR), "the hook's rules name the chart's pipeline");
        Self::parse("uninstall-hook-rules.yaml", namespace, &text.replace(PIPELINE_NAME_EXPR, pipeline))
    }

    fn parse(file: &'static str, namespace: &str, text: &str) -> Self {
        let rules = serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{file} is not a list of PolicyRules: {e}"));
        Self { file, namespace: namespace.to_owned(), rules }
    }

    /// Whether one attribute set is allowed.
    pub fn allows(&self, a: &Attributes) -> bool {
        a.namespace.as_deref() == Some(self.namespace.as_str()) && self.rules.iter().any(|rule| rule_allows(rule, a))
    }

    /// Panics, naming the missing permission, unless the API server would let `request` through.
    pub fn assert_allows(&self, request: &Request<'_>) {
        let Some(needed) = required(request) else {
            // Non-resource URLs (/version, /api): allowed to every authenticated user by the
            // default system:discovery and system:public-info-viewer ClusterRoles, never by a Role.
            assert!(matches!(request.path, "/version" | "/api" | "/apis"), "no Role grants {}", request.path);
            return;
        };
        for a in needed {
            assert!(
                self.allows(&a),
                "forbidden: {} {}?{} needs `{a}`, which {} does not grant",
                request.method,
                request.path,
                request.query,
                self.file
            );
        }
    }
}

fn matches(list: &[String], value: &str) -> bool {
    list.iter().any(|item| item == "*" || item == value)
}

fn resource_matches(rule: &PolicyRule, a: &Attributes) -> bool {
    let combined =
        if a.subresource.is_empty() { a.resource.clone() } else { format!("{}/{}", a.resource, a.subresource) };
    rule.resources
        .iter()
        .flatten()
        .any(|r| r == "*" || *r == combined || (!a.subresource.is_empty() && *r == format!("*/{}", a.subresource)))
}

fn rule_allows(rule: &PolicyRule, a: &Attributes) -> bool {
    let names = rule.resource_names.as_deref().unwrap_or_default();
    matches(&rule.verbs, &a.verb)
        && matches(rule.api_groups.as_deref().unwrap_or_default(), &a.group)
        && resource_matches(rule, a)
        && (names.is_empty() || a.name.as_deref().is_some_and(|n| names.iter().any(|x| x == n)))
}

/// The attributes of a resource request; `None` for a non-resource URL.
pub fn attributes(method: &Method, path: &str, query: &str) -> Option<Attributes> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] => (String::new(), rest),
        ["apis", group, _version, rest @ ..] => ((*group).to_owned(), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        // /namespaces/{ns}/{resource}...; /namespaces and /namespaces/{name} are the namespaces themselves.
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        _ => (None, rest),
    };
    let (resource, name, subresource) = match rest {
        [resource] => (*resource, None, ""),
        [resource, name] => (*resource, Some((*name).to_owned()), ""),
        [resource, name, subresource] => (*resource, Some((*name).to_owned()), *subresource),
        _ => return None,
    };
    let watch = query.split('&').any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match (method.as_str(), name.is_some()) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        (other, _) => panic!("no RBAC verb for {other}"),
    };
    Some(Attributes {
        verb: verb.to_owned(),
        group,
        resource: resource.to_owned(),
        subresource: subresource.to_owned(),
        namespace,
        name,
    })
}

/// Everything the API server authorizes for `request`: its own attributes,
/// `create` for an apply that may create, and the owner-reference checks.
pub fn required(request: &Request<'_>) -> Option<Vec<Attributes>> {
    let own = attributes(request.method, request.path, request.query)?;
    let mut needed = vec![own.clone()];
    let writes = matches!(own.verb.as_str(), "create" | "update" | "patch");
    if own.verb == "patch" && own.subresource.is_empty() && request.content_type.starts_with("application/apply-patch")
    {
        needed.push(Attributes { verb: "create".into(), ..own.clone() });
    }
    let owners = request.body.pointer("/metadata/ownerReferences").and_then(Value::as_array);
    if let (true, Some(owners)) = (writes && own.subresource.is_empty(), owners) {
        let name = own.name.clone().or_else(|| request.body.pointer("/metadata/name")?.as_str().map(str::to_owned));
        needed.push(Attributes { verb: "delete".into(), name, ..own.clone() });
        for owner in owners.iter().filter(|o| o["blockOwnerDeletion"] == Value::Bool(true)) {
            needed.push(owner_finalizers(owner, own.namespace.clone()));
        }
    }
    Some(needed)
}

/// `update` on the owner's `finalizers`, for the kinds these tests own objects with.
fn owner_finalizers(owner: &Value, namespace: Option<String>) -> Attributes {
    let api_version = owner["apiVersion"].as_str().unwrap_or_default();
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or_default();
    let resource = match owner["kind"].as_str() {
        Some("OrderPipeline") => "orderpipelines",
        other => panic!("no resource known for owner kind {other:?}"),
    };
    Attributes {
        verb: "update".into(),
        group: group.to_owned(),
        resource: resource.to_owned(),
        subresource: "finalizers".into(),
        namespace,
        name: owner["name"].as_str().map(str::to_owned),
    }
}
