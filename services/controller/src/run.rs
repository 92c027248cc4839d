//! `orderflow-controller run`: the in-cluster controller.
//!
//! - Serves `/healthz` (the process is alive), `/readyz` (the API server
//!   answers; 503 once shutdown began) and `/metrics` on `HTTP_ADDR`.
//! - Campaigns for the Lease `LEASE_NAME` (kube-lease-manager); only the
//!   leader reconciles, so two replicas are safe. A replica that loses the
//!   lease stops reconciling and exits, to start over as a candidate.
//! - Watches OrderPipelines in one namespace (`WATCH_NAMESPACE`, by default
//!   its own), filtered by generation and finalizers, so its own status writes
//!   never trigger a reconcile; owned ConfigMaps and the published Secrets
//!   (by label; the key Secrets have no owner reference, so Secrets map to
//!   their pipeline by its label) bring a pipeline back when someone edits or
//!   deletes them, and a deleted key Secret is made again at once. Each pipeline is
//!   reconciled again every `RESYNC_INTERVAL` to repair drift in SQS and
//!   PostgreSQL, which send no events.
//! - SIGTERM: stop accepting new reconciles, finish those in flight (bounded by
//!   `SHUTDOWN_TIMEOUT`), release the lease, exit.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use axum::{Router, extract::State, routing::get};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{
    Api, Client,
    runtime::{
        Controller, Predicate, WatchStreamExt, controller::Config as ControllerConfig, events::Reporter, predicates,
        reflector, watcher,
    },
};
use settings::Env;
use shutdown::CancellationToken;

use crate::{
    controller, metrics,
    plan::publish::{MANAGED_BY, PIPELINE_LABEL},
    resource::OrderPipeline,
};

/// The controller's own variables, for the configuration reference.
pub const SETTINGS: &[settings::Doc] = &[
    settings::Doc::tuning(
        "WATCH_NAMESPACE",
        "namespace whose OrderPipelines are reconciled; unset, `POD_NAMESPACE` (the chart sets it), else the kubeconfig's",
    ),
    settings::Doc::development("POD_NAMESPACE", "the pod's own namespace, from the downward API"),
    settings::Doc::development(
        "POD_NAME",
        "this replica's name in Events and the Lease, from the downward API; unset, the host name",
    ),
    settings::Doc::tuning("LEADER_ELECTION", "leader election through a Lease; off only for one-replica debugging"),
    settings::Doc::tuning("LEASE_NAME", "name of the Lease"),
    settings::Doc::tuning("RESYNC_INTERVAL", "period of the drift-repairing reconcile (at least 10 s)"),
    settings::Doc::tuning("RECONCILE_CONCURRENCY", "OrderPipelines reconciled at once"),
];

/// Settings of the in-cluster controller, from the environment.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Where `/healthz`, `/readyz` and `/metrics` are served (`HTTP_ADDR`).
    pub http_addr: SocketAddr,
    /// Namespace whose OrderPipelines are reconciled (`WATCH_NAMESPACE`, else
    /// `POD_NAMESPACE`, else the kubeconfig's).
    pub namespace: Option<String>,
    /// This replica's name in Events and the Lease (`POD_NAME`, else the host name).
    pub identity: String,
    /// Leader election on/off (`LEADER_ELECTION`); off only for one-replica debugging.
    pub leader_election: bool,
    /// Name of the Lease (`LEASE_NAME`).
    pub lease_name: String,
    /// Period of the drift-repairing reconcile (`RESYNC_INTERVAL`).
    pub resync: Duration,
    /// Pipelines reconciled at once (`RECONCILE_CONCURRENCY`).
    pub concurrency: u16,
    /// Longest wait for in-flight reconciles at shutdown (`SHUTDOWN_TIMEOUT`).
    pub shutdown_timeout: Duration,
    /// Limits of the health/metrics listener (`HTTP_HEADER_READ_TIMEOUT`,
    /// `HTTP_IDLE_TIMEOUT`, `HTTP_MAX_CONNECTIONS`), as in the services.
    pub serve: web::serve::ServeSettings,
}

impl RunSettings {
    pub fn from_env(mut env: Env) -> Result<Self, settings::ConfigError> {
        let namespace = env.optional::<String>("WATCH_NAMESPACE").or_else(|| env.optional("POD_NAMESPACE"));
        let identity = env
            .optional::<String>("POD_NAME")
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| format!("orderflow-controller-{}", std::process::id()));
        let s = Self {
            http_addr: env.get("HTTP_ADDR", SocketAddr::from(([0, 0, 0, 0], 8082))),
            namespace,
            identity,
            leader_election: env.flag("LEADER_ELECTION", true),
            lease_name: env.get("LEASE_NAME", "orderflow-controller".to_owned()),
            resync: env.duration("RESYNC_INTERVAL", Duration::from_secs(300)),
            concurrency: env.get("RECONCILE_CONCURRENCY", 4),
            shutdown_timeout: env.duration("SHUTDOWN_TIMEOUT", Duration::from_secs(25)),
            serve: web::serve::ServeSettings::from_env(&mut env),
        };
        if s.resync < Duration::from_secs(10) {
            env.invalid("RESYNC_INTERVAL", "must be at least 10s");
        }
        env.finish()?;
        Ok(s)
    }
}

#[derive(Clone)]
struct Health {
    client: Client,
    accepting: web::Accepting,
}

/// `/healthz` and `/metrics` are the services' shared handlers; `/readyz`
/// asks the API server.
fn ops_router(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(web::health::healthz))
        .route(
            "/readyz",
            get(|State(h): State<Health>| async move {
                let client = h.client.clone();
                let probe = web::Probe::required("kubernetes", async move {
                    client.apiserver_version().await.map(|_| ()).map_err(|e| e.to_string())
                });
                web::readiness(&h.accepting, Duration::from_secs(2), vec![probe]).await
            }),
        )
        .route("/metrics", get(web::health::metrics))
        .with_state(health)
}

/// Runs until `stop` is cancelled, or leadership is lost (an error).
pub async fn run(settings: RunSettings, stop: CancellationToken) -> anyhow::Result<()> {
    // kube's errors already carry their causes in their message.
    let client = Client::try_default().await.map_err(|e| anyhow::anyhow!("no Kubernetes client: {e}"))?;
    run_with_client(client, settings, stop).await
}

/// [`run`] on a given client (the tests' mocked API server).
pub async fn run_with_client(client: Client, settings: RunSettings, stop: CancellationToken) -> anyhow::Result<()> {
    let namespace = settings.namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned());
    // Fail fast, and say how to fix it, when the CRD is missing or RBAC forbids the watch.
    let pipelines: Api<OrderPipeline> = Api::namespaced(client.clone(), &namespace);
    if let Err(e) = pipelines.list(&kube::api::ListParams::default().limit(1)).await {
        anyhow::bail!(
            "cannot list OrderPipelines in namespace {namespace} ({e}): is the CRD installed \
             (kubectl apply -f k8s/crds/orderpipelines.yaml) and the Role bound (k8s/controller/rbac.yaml)?"
        );
    }
    metrics::declare();
    metrics::leader(false);

    let accepting = web::Accepting::default();
    let listener = tokio::net::TcpListener::bind(settings.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", settings.http_addr))?;
    tracing::info!(addr = %settings.http_addr, namespace, identity = %settings.identity, "orderflow-controller starting");
    let router = ops_router(Health { client: client.clone(), accepting: accepting.clone() });
    let server_stop = stop.clone();
    let server_accepting = accepting.clone();
    let limits = settings.serve.clone();
    let server = tokio::spawn(async move {
        let stopping = async move {
            server_stop.cancelled().await;
            server_accepting.stop();
        };
        web::serve::serve(listener, router, &limits, stopping).await
    });

    // Leadership: the controller runs only while this replica holds the Lease.
    let lease = if settings.leader_election {
        let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &settings.lease_name)
            .with_namespace(&namespace)
            .with_identity(&settings.identity)
            .with_field_manager(format!("orderflow-controller-{}", settings.identity))
            .with_duration(15)
            .with_grace(5)
            .build()
            .await
            .context("cannot set up leader election")?;
        let (mut leading, task) = manager.watch().await;
        tracing::info!(lease = %settings.lease_name, "waiting to become the leader");
        while !*leading.borrow_and_update() {
            tokio::select! {
                () = stop.cancelled() => break,
                changed = leading.changed() => changed.context("leader election stopped")?,
            }
        }
        Some((leading, task))
    } else {
        None
    };

    let mut lost_leadership = false;
    if !stop.is_cancelled() {
        tracing::info!("leading: reconciling OrderPipelines");
        metrics::leader(true);
        let controller_stop = CancellationToken::new();
        let lost = {
            let mut leading = lease.as_ref().map(|(rx, _)| rx.clone());
            let controller_stop = controller_stop.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let lost = async {
                    match leading.as_mut() {
                        Some(rx) => {
                            while *rx.borrow_and_update() {
                                if rx.changed().await.is_err() {
                                    break;
                                }
                            }
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                let lost = tokio::select! {
                    () = stop.cancelled() => false,
                    () = lost => true,
                };
                controller_stop.cancel();
                lost
            })
        };
        run_controller(&client, &namespace, &settings, controller_stop.clone()).await;
        lost_leadership = lost.await.unwrap_or(false);
        metrics::leader(false);
    }

    if let Some((leading, task)) = lease {
        drop(leading);
        match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(Ok(Ok(manager))) => {
                if let Err(e) = manager.release().await {
                    tracing::warn!(error = %e, "cannot release the lease");
                }
            }
            _ => tracing::warn!("the lease manager did not stop in time"),
        }
    }
    stop.cancel();
    let _ = shutdown::drain_deadline(settings.shutdown_timeout, async {
        let _ = server.await;
    })
    .await;
    if lost_leadership {
        anyhow::bail!("lost the leader lease; exiting so a restart campaigns again");
    }
    tracing::info!("orderflow-controller stopped");
    Ok(())
}

/// The pipeline a published Secret belongs to, from its label.
fn pipeline_of(secret: Secret) -> Option<reflector::ObjectRef<OrderPipeline>> {
    let name = secret.metadata.labels?.remove(PIPELINE_LABEL)?;
    Some(reflector::ObjectRef::new(&name).within(&secret.metadata.namespace?))
}

async fn run_controller(client: &Client, namespace: &str, settings: &RunSettings, stop: CancellationToken) {
    let pipelines: Api<OrderPipeline> = Api::namespaced(client.clone(), namespace);
    let (reader, writer) = reflector::store();
    // Generation changes (spec edits, deletion) and finalizer changes only:
    // status writes, the controller's own included, do not come back here.
    let triggers = watcher(pipelines, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation.combine(predicates::finalizers), Default::default());
    let owned = watcher::Config::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
    let reporter = Reporter { controller: "orderflow-controller".into(), instance: Some(settings.identity.clone()) };
    let ctx = controller::Context::new(client.clone(), reporter, settings.resync);
    let shutdown_timeout = settings.shutdown_timeout;
    let graceful = stop.clone();
    let run = Controller::for_stream(triggers, reader)
        .owns(Api::<ConfigMap>::namespaced(client.clone(), namespace), owned.clone())
        .watches(Api::<Secret>::namespaced(client.clone(), namespace), owned, pipeline_of)
        .with_config(ControllerConfig::default().concurrency(settings.concurrency))
        .graceful_shutdown_on(async move { graceful.cancelled().await })
        .run(controller::reconcile, controller::error_policy, Arc::clone(&ctx))
        .for_each(|result| async move {
            match result {
                Ok((object, action)) => tracing::debug!(pipeline = %object, ?action, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile did not complete"),
            }
        });
    // In-flight reconciles finish after the stop, within the shutdown timeout.
    tokio::select! {
        () = run => {}
        () = async { stop.cancelled().await; tokio::time::sleep(shutdown_timeout).await } => {
            tracing::warn!("reconciles still running at the shutdown timeout; exiting anyway");
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body as AxumBody;
    use http::{Request, Response, StatusCode};
    use kube::client::Body;
    use tower::ServiceExt;

    use super::*;

    async fn get(router: &Router, path: &str) -> (StatusCode, String) {
        let response = router.clone().oneshot(Request::get(path).body(AxumBody::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn health_readiness_and_metrics_follow_the_api_server_and_shutdown() {
        let (service, mut api) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let accepting = web::Accepting::default();
        let health = Health { client: Client::new(service, "default"), accepting: accepting.clone() };
        metrics::declare();
        metrics::leader(true);
        let router = ops_router(health);
        // The API server answers /version, then fails once, then answers again.
        let server = tokio::spawn(async move {
            for status in [200, 503, 200] {
                let (request, send) = api.next_request().await.expect("a readiness probe");
                assert_eq!(request.uri().path(), "/version");
                let body = serde_json::json!({"major": "1", "minor": "37", "gitVersion": "v1.37.0", "gitCommit": "x",
                    "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25",
                    "compiler": "gc", "platform": "linux/amd64"});
                let body = if status == 200 { body } else { serde_json::json!({"kind": "Status", "code": 503}) };
                send.send_response(
                    Response::builder().status(status).body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap(),
                );
            }
        });

        assert_eq!(get(&router, "/healthz").await.0, StatusCode::OK);
        let (status, body) = get(&router, "/readyz").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, metrics) = get(&router, "/metrics").await;
        assert!(metrics.contains("controller_leader 1"), "{metrics}");

        let (status, body) = get(&router, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "the API server is down: {body}");
        assert!(body.contains("\"kubernetes\"") && body.contains("down"), "{body}");

        accepting.stop();
        let (status, body) = get(&router, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "shutting down: {body}");
        server.await.unwrap();
    }

    #[test]
    fn a_published_secret_maps_to_its_pipeline_by_label_owner_reference_or_not() {
        let owner = crate::plan::publish::Owner { name: "demo".into(), namespace: "shop".into(), uid: None };
        let key = crate::plan::keys::key_secret(&owner, crate::plan::keys::Key::Signing, "pem");
        assert_eq!(key.metadata.owner_references, None);
        assert_eq!(pipeline_of(key.clone()), Some(reflector::ObjectRef::new("demo").within("shop")));
        let unlabelled = Secret { metadata: kube::api::ObjectMeta { labels: None, ..key.metadata }, ..key };
        assert_eq!(pipeline_of(unlabelled), None);
    }
}
