//! Fixtures of the controller's integration tests: a mocked Kubernetes API
//! server that plays a script (each expected request is asserted and
//! answered; a request that never comes fails the test after a timeout, and so
//! does one nobody expected; and one the Role under test does not allow, see
//! [`rbac`]), pipelines with unique names, and a guard that deletes the
//! queues, databases and roles a test made, whatever happened.
//!
//! SQS and PostgreSQL are the real ones (the emulator on 127.0.0.1:9324 and
//! the local server); only the Kubernetes API is mocked.

#![allow(dead_code)] // each test binary uses its own part of this module

pub mod rbac;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::{ByteString, api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::Time};
use kube::{Client, Resource, client::Body, runtime::events::Reporter};
use orderflow_controller::{
    OrderPipeline, OrderPipelineSpec, OrderPipelineStatus,
    controller::Context,
    plan::keys::{self, Key},
    resource::FINALIZER,
    testing,
};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use tokio::task::JoinHandle;
use tower_test::mock::{self, Handle};

pub const NAMESPACE: &str = "orderflow-test";
/// How long the mock API server waits for each expected request.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// A tag for names: starts with a letter, lower-case letters and digits.
pub fn tag() -> String {
    format!("t{}", testkit::unique_tag())
}

/// A pipeline named after `tag`, as the API server would hand it out.
pub fn pipeline(tag: &str, spec: OrderPipelineSpec) -> OrderPipeline {
    let mut p = OrderPipeline::new(&format!("p{tag}"), spec);
    p.meta_mut().namespace = Some(NAMESPACE.into());
    p.meta_mut().uid = Some(format!("uid-{tag}"));
    p.meta_mut().generation = Some(1);
    p.meta_mut().resource_version = Some("1".into());
    p
}

/// `pipeline` with the controller's finalizer.
pub fn finalized(mut p: OrderPipeline) -> OrderPipeline {
    p.meta_mut().finalizers = Some(vec![FINALIZER.into()]);
    p
}

/// `pipeline` being deleted.
pub fn deleting(mut p: OrderPipeline) -> OrderPipeline {
    p.meta_mut().deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
    p
}

/// The admin Secret for the local PostgreSQL (trust authentication).
pub fn admin_secret() -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(testing::ADMIN_SECRET.into()),
            namespace: Some(NAMESPACE.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([
            ("username".into(), ByteString(b"postgres".to_vec())),
            ("password".into(), ByteString(Vec::new())),
        ])),
        ..Default::default()
    }
}

/// A client on a mocked API server that lets through what `role` allows.
pub fn api_server(role: rbac::Role) -> (Client, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, NAMESPACE), ApiServer { handle, role })
}

/// A reconciler context on a mocked API server, with the controller's Role.
pub fn context() -> (Arc<Context>, ApiServer) {
    let (client, server) = api_server(rbac::Role::controller(NAMESPACE));
    let reporter = Reporter { controller: "orderflow-controller".into(), instance: Some("test".into()) };
    (Context::new(client, reporter, Duration::from_secs(300)), server)
}

pub fn pipeline_path(p: &OrderPipeline) -> String {
    format!(
        "/apis/orderflow.dev/v1alpha1/namespaces/{NAMESPACE}/orderpipelines/{}",
        p.metadata.name.as_deref().unwrap()
    )
}

pub fn secret_path(name: &str) -> String {
    format!("/api/v1/namespaces/{NAMESPACE}/secrets/{name}")
}

/// Where Secrets are created.
pub fn secrets_path() -> String {
    format!("/api/v1/namespaces/{NAMESPACE}/secrets")
}

pub fn config_map_path(name: &str) -> String {
    format!("/api/v1/namespaces/{NAMESPACE}/configmaps/{name}")
}

type Check = Box<dyn FnOnce(&Value) + Send>;

/// One request the controller is expected to make, and the answer.
pub enum Step {
    /// `GET path`; `None` answers 404.
    Get { path: String, reply: Option<Value> },
    /// `GET path`, answered with what an earlier `Apply` or `Create` of this script wrote there.
    GetApplied { path: String },
    /// Server-side apply (`PATCH` with `fieldManager=orderflow-controller&force=true`)
    /// of a ConfigMap or Secret; the body is checked and echoed.
    Apply { path: String, check: Check },
    /// Server-side apply of `pipeline`'s status; answers the pipeline with that status.
    ApplyStatus { pipeline: Box<OrderPipeline>, check: Check },
    /// A JSON patch of the pipeline (the finalizer); answers `reply`.
    JsonPatch { path: String, check: Check, reply: Box<OrderPipeline> },
    /// An Event (`POST`, or `PATCH` of a repeated one) of this type and reason.
    Event { type_: &'static str, reason: String },
    /// `DELETE path`; `None` answers 404, else the object (as the API server
    /// answers a delete that waits for finalizers).
    Delete { path: String, reply: Option<Value> },
    /// `POST` to a collection (`path`, e.g. `.../secrets`) with the body
    /// checked; echoed, or with `exists` answered 409 AlreadyExists.
    Create { path: String, check: Check, exists: bool },
    /// A strategic merge patch of `path`, the body checked; answers `reply`
    /// with the patch's metadata merged in (enough for what is checked here).
    StrategicPatch { path: String, check: Check, reply: Value },
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Get { path, .. } | Step::GetApplied { path } => write!(f, "GET {path}"),
            Step::Apply { path, .. } => write!(f, "PATCH (apply) {path}"),
            Step::ApplyStatus { pipeline, .. } => write!(f, "PATCH (apply) {}/status", pipeline_path(pipeline)),
            Step::JsonPatch { path, .. } => write!(f, "PATCH (json) {path}"),
            Step::Event { type_, reason } => write!(f, "{type_} Event {reason}"),
            Step::Delete { path, .. } => write!(f, "DELETE {path}"),
            Step::Create { path, .. } => write!(f, "POST {path}"),
            Step::StrategicPatch { path, .. } => write!(f, "PATCH (strategic merge) {path}"),
        }
    }
}

/// Events of type Normal with these reasons, in order.
pub fn events(reasons: &[&str]) -> Vec<Step> {
    reasons.iter().map(|r| Step::Event { type_: "Normal", reason: (*r).to_owned() }).collect()
}

pub fn warning(reason: &str) -> Step {
    Step::Event { type_: "Warning", reason: reason.to_owned() }
}

/// A request the script saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub body: Value,
}

/// The mocked API server, authorizing every request with one Role.
pub struct ApiServer {
    handle: Handle<Request<Body>, Response<Body>>,
    role: rbac::Role,
}

fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

fn already_exists(path: &str) -> Response<Body> {
    json_response(
        StatusCode::CONFLICT,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("{path} already exists"), "reason": "AlreadyExists", "code": 409}),
    )
}

fn not_found(path: &str) -> Response<Body> {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("{path} not found"), "reason": "NotFound", "code": 404}),
    )
}

impl ApiServer {
    /// Plays `steps` in order, then fails on any further request (seen once
    /// the reconciler's client is dropped). Returns what it saw.
    pub fn run(self, steps: Vec<Step>) -> JoinHandle<Vec<Seen>> {
        let ApiServer { mut handle, role } = self;
        tokio::spawn(async move {
            let mut seen = Vec::new();
            for step in steps {
                let (request, send) = tokio::time::timeout(STEP_TIMEOUT, handle.next_request())
                    .await
                    .unwrap_or_else(|_| panic!("no request within {STEP_TIMEOUT:?}; expected {step:?}"))
                    .unwrap_or_else(|| panic!("the reconciler stopped calling the API; expected {step:?}"));
                let received = rbac::Received::read(request).await;
                role.assert_allows(&received.as_request());
                let rbac::Received { method, path, query, content_type, body } = received;
                let got = format!("{method} {path}");
                match step {
                    Step::Get { path: want, reply } => {
                        assert_eq!(got, format!("GET {want}"), "expected GET {want}");
                        send.send_response(match reply {
                            Some(v) => json_response(StatusCode::OK, &v),
                            None => not_found(&want),
                        });
                    }
                    Step::GetApplied { path: want } => {
                        assert_eq!(got, format!("GET {want}"), "expected GET {want}");
                        let applied = seen.iter().rev().find(|s: &&Seen| {
                            (s.method == Method::PATCH && s.path == want)
                                || (s.method == Method::POST
                                    && s.body["metadata"]["name"].as_str().map(|n| format!("{}/{n}", s.path))
                                        == Some(want.clone()))
                        });
                        send.send_response(match applied {
                            Some(s) => json_response(StatusCode::OK, &s.body),
                            None => not_found(&want),
                        });
                    }
                    Step::Apply { path: want, check } => {
                        assert_eq!(got, format!("PATCH {want}"), "expected a server-side apply of {want}");
                        assert_ssa(&query);
                        check(&body);
                        send.send_response(json_response(StatusCode::OK, &body));
                    }
                    Step::ApplyStatus { pipeline, check } => {
                        let want = format!("{}/status", pipeline_path(&pipeline));
                        assert_eq!(got, format!("PATCH {want}"), "expected a server-side apply of the status");
                        assert_ssa(&query);
                        check(&body);
                        let mut answer = *pipeline;
                        answer.status = Some(serde_json::from_value(body["status"].clone()).expect("a valid status"));
                        send.send_response(json_response(StatusCode::OK, &answer));
                    }
                    Step::JsonPatch { path: want, check, reply } => {
                        assert_eq!(got, format!("PATCH {want}"), "expected a JSON patch of {want}");
                        check(&body);
                        send.send_response(json_response(StatusCode::OK, &reply));
                    }
                    Step::Delete { path: want, reply } => {
                        assert_eq!(got, format!("DELETE {want}"), "expected DELETE {want}");
                        send.send_response(match reply {
                            Some(v) => json_response(StatusCode::OK, &v),
                            None => not_found(&want),
                        });
                    }
                    Step::Create { path: want, check, exists } => {
                        assert_eq!(got, format!("POST {want}"), "expected a create in {want}");
                        assert!(
                            query.contains("fieldManager=orderflow-controller"),
                            "created as orderflow-controller, got ?{query}"
                        );
                        check(&body);
                        send.send_response(if exists {
                            already_exists(&want)
                        } else {
                            json_response(StatusCode::CREATED, &body)
                        });
                    }
                    Step::StrategicPatch { path: want, check, mut reply } => {
                        assert_eq!(got, format!("PATCH {want}"), "expected a strategic merge patch of {want}");
                        assert_eq!(content_type, "application/strategic-merge-patch+json", "PATCH {want}");
                        check(&body);
                        if let (Some(into), Some(from)) =
                            (reply["metadata"].as_object_mut(), body["metadata"].as_object())
                        {
                            into.extend(from.clone());
                        }
                        send.send_response(json_response(StatusCode::OK, &reply));
                    }
                    Step::Event { type_, reason } => {
                        let events = format!("/apis/events.k8s.io/v1/namespaces/{NAMESPACE}/events");
                        assert!(
                            (method == Method::POST && path == events)
                                || (method == Method::PATCH && path.starts_with(&format!("{events}/"))),
                            "expected the {type_} Event {reason}, got {got}: {body}"
                        );
                        assert_eq!(
                            (body["type"].as_str(), body["reason"].as_str()),
                            (Some(type_), Some(reason.as_str())),
                            "Event {}",
                            body["note"]
                        );
                        // events.k8s.io refuses longer notes (NoteLengthLimit, kubernetes
                        // pkg/apis/core/validation/events.go), and the Event is lost.
                        let note = body["note"].as_str().unwrap_or_default();
                        assert!(note.len() <= 1024, "the API server refuses a {}-byte note: {note}", note.len());
                        send.send_response(json_response(StatusCode::OK, &body));
                    }
                }
                seen.push(Seen { method, path, body });
            }
            if let Some((request, _)) = handle.next_request().await {
                panic!("unexpected request after the script: {} {}", request.method(), request.uri());
            }
            seen
        })
    }
}

fn assert_ssa(query: &str) {
    assert!(
        query.contains("fieldManager=orderflow-controller") && query.contains("force=true"),
        "server-side apply as orderflow-controller with force, got ?{query}"
    );
}

/// Waits for the script to finish (the reconciler's client must be dropped by now).
pub async fn finish(server: JoinHandle<Vec<Seen>>) -> Vec<Seen> {
    match tokio::time::timeout(Duration::from_secs(60), server).await.expect("the mock API server finishes") {
        Ok(seen) => seen,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// The status a script's status apply carried.
pub fn applied_status(seen: &[Seen]) -> OrderPipelineStatus {
    let body = &seen.iter().rev().find(|s| s.path.ends_with("/status")).expect("a status write").body;
    serde_json::from_value(body["status"].clone()).unwrap()
}

/// The conditions of a status as `(type, status, reason)`.
pub fn conditions(status: &OrderPipelineStatus) -> Vec<(String, String, String)> {
    status.conditions.iter().map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone())).collect()
}

/// The SQS client of the tests.
pub async fn sqs() -> aws_sdk_sqs::Client {
    messaging::connect(&messaging::SqsSettings::local(testkit::sqs_endpoint())).await
}

/// Every attribute of queue `name`, or `None` when it does not exist.
pub async fn queue_attributes(name: &str) -> Option<BTreeMap<String, String>> {
    let client = sqs().await;
    let url = client.get_queue_url().queue_name(name).send().await.ok()?.queue_url?;
    let out = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    Some(out.attributes.unwrap_or_default().into_iter().map(|(k, v)| (k.as_str().to_owned(), v)).collect())
}

/// The admin URL of the local PostgreSQL, on `database`.
pub fn admin_url(database: &str) -> String {
    testkit::db::replace_database(&testkit::database_url(), database)
}

pub async fn admin(database: &str) -> PgConnection {
    PgConnection::connect(&admin_url(database)).await.expect("connect to the local PostgreSQL as postgres")
}

/// Deletes the queues, databases and roles of a spec when dropped.
pub struct Cleanup {
    queues: Vec<String>,
    databases: Vec<(String, String)>,
}

impl Cleanup {
    pub fn new(spec: &OrderPipelineSpec) -> Self {
        let q = &spec.queues;
        Self {
            queues: [
                &q.orders.name,
                &q.orders.dead_letter.name,
                &q.delivery_status.name,
                &q.delivery_status.dead_letter.name,
            ]
            .map(String::clone)
            .to_vec(),
            databases: [&spec.databases.orders, &spec.databases.delivery]
                .map(|d| (d.name.clone(), d.role.clone()))
                .to_vec(),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (queues, databases) = (self.queues.clone(), self.databases.clone());
        let cleanup = async move {
            let client = sqs().await;
            for name in queues {
                if let Ok(out) = client.get_queue_url().queue_name(&name).send().await {
                    let _ = client.delete_queue().set_queue_url(out.queue_url).send().await;
                }
            }
            if let Ok(mut conn) = PgConnection::connect(&admin_url("postgres")).await {
                for (db, role) in databases {
                    let _ =
                        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")))
                            .execute(&mut conn)
                            .await;
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP ROLE IF EXISTS \"{role}\"")))
                        .execute(&mut conn)
                        .await;
                }
            }
        };
        // From a Drop, with or without a runtime on this thread.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(cleanup)
        })
        .join();
    }
}

/// The key Secrets of `p` as the controller makes them (fresh material).
pub fn key_secrets(p: &OrderPipeline) -> Vec<Secret> {
    let owner = orderflow_controller::plan::publish::Owner {
        name: p.metadata.name.clone().unwrap(),
        namespace: NAMESPACE.into(),
        uid: p.metadata.uid.clone(),
    };
    Key::ALL.iter().map(|&key| keys::key_secret(&owner, key, &key.generate())).collect()
}

/// The reads of `p`'s key Secrets, answered with `present` (or 404 each when empty).
pub fn key_gets(p: &OrderPipeline, present: &[Secret]) -> Vec<Step> {
    let name = p.metadata.name.clone().unwrap();
    Key::ALL
        .iter()
        .map(|key| {
            let path = secret_path(&key.secret_name(&name));
            let reply = present
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(key.secret_name(&name).as_str()))
                .map(|s| serde_json::to_value(s).unwrap());
            Step::Get { path, reply }
        })
        .collect()
}

/// The creates of `p`'s two key Secrets, each body checked by [`assert_new_key_secret`].
pub fn key_creates(p: &OrderPipeline) -> Vec<Step> {
    let name = p.metadata.name.clone().unwrap();
    Key::ALL
        .iter()
        .map(|&key| {
            let name = name.clone();
            Step::Create {
                path: secrets_path(),
                check: Box::new(move |body| assert_new_key_secret(body, &name, key)),
                exists: false,
            }
        })
        .collect()
}

/// A created key Secret: its name, labels, no owner reference, and key
/// material the order-service can use. The signing key is parsed as an
/// Ed25519 PKCS#8 key (aws-lc-rs, as the order-service does) and signs;
/// the client secret key is 256 bits of URL-safe base64.
pub fn assert_new_key_secret(body: &Value, pipeline: &str, key: Key) {
    assert_eq!(body["metadata"]["name"], key.secret_name(pipeline).as_str());
    assert_eq!(body["metadata"]["labels"]["orderflow.dev/pipeline"], pipeline);
    assert_eq!(body["metadata"]["labels"][keys::KEY_LABEL], key.id());
    assert!(body["metadata"].get("ownerReferences").is_none(), "a key Secret outlives its pipeline: {body}");
    let data: ByteString = serde_json::from_value(body["data"][key.data_key()].clone()).expect("base64 data");
    let text = String::from_utf8(data.0).unwrap();
    match key {
        Key::Signing => {
            use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
            let block = pem::parse(&text).expect("PEM");
            assert_eq!(block.tag(), "PRIVATE KEY");
            let pair = Ed25519KeyPair::from_pkcs8(block.contents()).expect("an Ed25519 key in PKCS#8");
            let signature = pair.sign(b"header.claims");
            UnparsedPublicKey::new(&ED25519, pair.public_key().as_ref())
                .verify(b"header.claims", signature.as_ref())
                .expect("it signs");
        }
        Key::ClientSecret => {
            let key = text.trim();
            assert_eq!(key.len(), 43, "{} characters", key.len());
            assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        }
    }
}
