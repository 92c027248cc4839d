//! The controller's RBAC, held to what it does. First the model the mocked
//! API servers authorize with (common/rbac.rs): the attributes Kubernetes
//! derives from a request, and the rules that match them. Then the part of
//! the controller the scripted reconcile tests do not reach: `run` (the
//! startup check, leader election with its Lease, the watches on
//! OrderPipelines and on the ConfigMaps and Secrets it owns, the release at
//! shutdown) against a small in-memory API server; every request it makes
//! must be allowed by the chart's controller Role.

mod common;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{
    NAMESPACE,
    rbac::{self, Attributes, Role},
};
use http::{Method, Request, Response, StatusCode};
use kube::{Client, client::Body};
use orderflow_controller::run::{RunSettings, run_with_client};
use serde_json::{Value, json};
use tower_test::mock;

fn attrs(verb: &str, group: &str, resource: &str, subresource: &str, name: Option<&str>) -> Attributes {
    Attributes {
        verb: verb.into(),
        group: group.into(),
        resource: resource.into(),
        subresource: subresource.into(),
        namespace: Some(NAMESPACE.into()),
        name: name.map(str::to_owned),
    }
}

fn of(method: Method, path: &str, query: &str) -> Attributes {
    rbac::attributes(&method, path, query).expect("a resource request")
}

#[test]
fn requests_map_to_the_verbs_and_resources_kubernetes_authorizes() {
    let ns = format!("/api/v1/namespaces/{NAMESPACE}");
    let opl = format!("/apis/orderflow.dev/v1alpha1/namespaces/{NAMESPACE}/orderpipelines");
    assert_eq!(of(Method::GET, &format!("{ns}/secrets/a"), ""), attrs("get", "", "secrets", "", Some("a")));
    assert_eq!(of(Method::GET, &format!("{ns}/secrets"), "labelSelector=x"), attrs("list", "", "secrets", "", None));
    assert_eq!(of(Method::GET, &format!("{ns}/secrets"), "&watch=true&resourceVersion=1").verb, "watch");
    assert_eq!(of(Method::POST, &format!("{ns}/configmaps"), ""), attrs("create", "", "configmaps", "", None));
    assert_eq!(of(Method::PUT, &format!("{opl}/p"), "").verb, "update");
    assert_eq!(
        of(Method::PATCH, &format!("{opl}/p/status"), ""),
        attrs("patch", "orderflow.dev", "orderpipelines", "status", Some("p"))
    );
    assert_eq!(of(Method::DELETE, &format!("{opl}/p"), "").verb, "delete");
    assert_eq!(of(Method::DELETE, &opl, "").verb, "deletecollection");
    // The namespace itself is a cluster-scoped resource.
    let namespace = of(Method::GET, &ns, "");
    assert_eq!((namespace.resource.as_str(), namespace.namespace), ("namespaces", None));
    assert_eq!(rbac::attributes(&Method::GET, "/version", ""), None);
}

fn role(yaml: &str) -> Role {
    Role { file: "test", namespace: NAMESPACE.into(), rules: serde_yaml::from_str(yaml).unwrap() }
}

#[test]
fn rules_match_verb_group_resource_subresource_name_and_namespace() {
    let r = role(
        "- {apiGroups: [orderflow.dev], resources: [orderpipelines], verbs: [get], resourceNames: [mine]}\n\
         - {apiGroups: [''], resources: ['*/status'], verbs: ['*']}",
    );
    assert!(r.allows(&attrs("get", "orderflow.dev", "orderpipelines", "", Some("mine"))));
    assert!(!r.allows(&attrs("get", "orderflow.dev", "orderpipelines", "", Some("theirs"))), "resourceNames");
    assert!(!r.allows(&attrs("list", "orderflow.dev", "orderpipelines", "", None)), "a named rule lists nothing");
    assert!(!r.allows(&attrs("delete", "orderflow.dev", "orderpipelines", "", Some("mine"))), "verb");
    assert!(
        !r.allows(&attrs("get", "orderflow.dev", "orderpipelines", "status", Some("mine"))),
        "a subresource is its own"
    );
    assert!(r.allows(&attrs("patch", "", "pods", "status", Some("x"))), "*/status and *");
    assert!(!r.allows(&attrs("patch", "apps", "deployments", "status", Some("x"))), "group");
    let elsewhere = Attributes {
        namespace: Some("other".into()),
        ..attrs("get", "orderflow.dev", "orderpipelines", "", Some("mine"))
    };
    assert!(!r.allows(&elsewhere), "a Role grants nothing outside its namespace");
}

#[test]
fn an_apply_may_create_and_an_owner_reference_needs_delete_and_the_owners_finalizers() {
    let path = format!("/api/v1/namespaces/{NAMESPACE}/configmaps/p-config");
    let body = json!({"metadata": {"name": "p-config", "ownerReferences": [
        {"apiVersion": "orderflow.dev/v1alpha1", "kind": "OrderPipeline", "name": "p", "uid": "u", "blockOwnerDeletion": true}]}});
    let request = rbac::Request {
        method: &Method::PATCH,
        path: &path,
        query: "fieldManager=x",
        content_type: "application/apply-patch+yaml",
        body: &body,
    };
    let needed = rbac::required(&request).unwrap();
    assert_eq!(
        needed,
        vec![
            attrs("patch", "", "configmaps", "", Some("p-config")),
            attrs("create", "", "configmaps", "", Some("p-config")),
            attrs("delete", "", "configmaps", "", Some("p-config")),
            attrs("update", "orderflow.dev", "orderpipelines", "finalizers", Some("p")),
        ]
    );
    // A JSON patch of the status subresource needs only itself.
    let status = format!("/apis/orderflow.dev/v1alpha1/namespaces/{NAMESPACE}/orderpipelines/p/status");
    let request =
        rbac::Request { path: &status, content_type: "application/json-patch+json", body: &Value::Null, ..request };
    assert_eq!(rbac::required(&request).unwrap().len(), 1);
}

/// An in-memory API server for `run`: objects by path, lists of what is
/// stored, watches held open (never answered), patches merged.
#[derive(Default)]
struct Store {
    objects: HashMap<String, Value>,
    version: u64,
}

fn respond(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

fn not_found(path: &str) -> Response<Body> {
    respond(
        StatusCode::NOT_FOUND,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": format!("{path} not found"), "reason": "NotFound", "code": 404}),
    )
}

/// JSON merge patch (RFC 7386): enough for the Lease's strategic-merge and apply patches.
fn merge(into: &mut Value, patch: &Value) {
    match (into, patch) {
        (Value::Object(target), Value::Object(fields)) => {
            for (key, value) in fields {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, value) => *target = value.clone(),
    }
}

impl Store {
    fn stamp(&mut self, object: &mut Value) {
        self.version += 1;
        object["metadata"]["resourceVersion"] = json!(self.version.to_string());
        object["metadata"]["namespace"] = json!(NAMESPACE);
        if object["metadata"]["uid"].is_null() {
            object["metadata"]["uid"] = json!(format!("uid-{}", self.version));
        }
    }

    /// The answer to one request; `None` keeps a watch open.
    fn answer(&mut self, method: &Method, path: &str, query: &str, body: &Value) -> Option<Response<Body>> {
        if path == "/version" {
            return Some(respond(StatusCode::OK, &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0"})));
        }
        let a = rbac::attributes(method, path, query).expect("a resource request");
        Some(match a.verb.as_str() {
            "watch" => return None,
            "list" => {
                let prefix = format!("{path}/");
                let items: Vec<&Value> = self
                    .objects
                    .iter()
                    .filter(|(k, _)| k.strip_prefix(&prefix).is_some_and(|rest| !rest.contains('/')))
                    .map(|(_, v)| v)
                    .collect();
                respond(
                    StatusCode::OK,
                    &json!({"kind": "List", "apiVersion": "v1",
                    "metadata": {"resourceVersion": self.version.to_string()}, "items": items}),
                )
            }
            "get" => self.objects.get(path).map_or_else(|| not_found(path), |o| respond(StatusCode::OK, o)),
            "create" => {
                let mut object = body.clone();
                self.stamp(&mut object);
                let name = object["metadata"]["name"].as_str().expect("a named object").to_owned();
                self.objects.insert(format!("{path}/{name}"), object.clone());
                respond(StatusCode::CREATED, &object)
            }
            "patch" => {
                let mut object = self.objects.get(path).cloned().unwrap_or_else(|| json!({"metadata": {}}));
                merge(&mut object, body);
                self.stamp(&mut object);
                self.objects.insert(path.to_owned(), object.clone());
                respond(StatusCode::OK, &object)
            }
            "delete" => match self.objects.remove(path) {
                Some(object) => respond(StatusCode::OK, &object),
                None => not_found(path),
            },
            other => respond(StatusCode::METHOD_NOT_ALLOWED, &json!({"kind": "Status", "code": 405, "message": other})),
        })
    }
}

/// What the in-memory server saw: each request's required attributes, and every refusal.
#[derive(Default)]
struct Log {
    seen: Vec<Attributes>,
    forbidden: Vec<String>,
}

fn serve(role: Role) -> (Client, Arc<Mutex<Log>>) {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let log = Arc::new(Mutex::new(Log::default()));
    let server_log = Arc::clone(&log);
    tokio::spawn(async move {
        let mut store = Store::default();
        let mut open_watches = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            let received = rbac::Received::read(request).await;
            let r = received.as_request();
            let rbac::Received { method, path, query, body, .. } = &received;
            let needed = rbac::required(&r).unwrap_or_default();
            {
                let mut log = server_log.lock().unwrap();
                for a in &needed {
                    if !role.allows(a) {
                        log.forbidden.push(format!("{method} {path}?{query} needs `{a}`"));
                    }
                }
                log.seen.extend(needed);
            }
            match store.answer(method, path, query, body) {
                Some(response) => send.send_response(response),
                None => open_watches.push(send),
            }
        }
    });
    (Client::new(service, NAMESPACE), log)
}

fn settings() -> RunSettings {
    let mut s = RunSettings::from_env(settings::Env::from_pairs([
        ("WATCH_NAMESPACE", NAMESPACE),
        ("POD_NAME", "orderflow-controller-0"),
        ("SHUTDOWN_TIMEOUT", "1s"),
    ]))
    .expect("valid settings");
    s.http_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    s
}

fn saw(log: &Log, verb: &str, resource: &str) -> bool {
    log.seen.iter().any(|a| a.verb == verb && a.resource == resource)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_stays_within_the_controller_role_from_start_to_shutdown() {
    let (client, log) = serve(Role::controller(NAMESPACE));
    let stop = shutdown::CancellationToken::new();
    let run = tokio::spawn(run_with_client(client, settings(), stop.clone()));

    // Leading and watching: the Lease taken, a watch on each of the three kinds.
    let watching = async {
        loop {
            {
                let log = log.lock().unwrap();
                let leading = saw(&log, "patch", "leases");
                if leading && ["orderpipelines", "configmaps", "secrets"].iter().all(|r| saw(&log, "watch", r)) {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), watching).await.unwrap_or_else(|_| {
        let seen: Vec<String> = log.lock().unwrap().seen.iter().map(ToString::to_string).collect();
        panic!("run did not lead and watch within 30 s; it asked for: {seen:#?}")
    });
    stop.cancel();
    let result = tokio::time::timeout(Duration::from_secs(30), run).await.expect("run stops").unwrap();
    result.expect("a clean shutdown");

    let log = log.lock().unwrap();
    assert!(log.forbidden.is_empty(), "the controller Role forbids: {:#?}", log.forbidden);
    for (verb, resource) in [
        ("list", "orderpipelines"),
        ("get", "leases"),
        ("create", "leases"),
        ("list", "configmaps"),
        ("list", "secrets"),
    ] {
        assert!(saw(&log, verb, resource), "expected a {verb} of {resource}");
    }
    let releases = log.seen.iter().filter(|a| a.verb == "patch" && a.resource == "leases").count();
    assert!(releases >= 2, "the Lease is taken and released ({releases} patches)");
}
