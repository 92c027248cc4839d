//! The CRD generated from the Rust types is the one committed (in k8s/crds/
//! and the chart), and every example OrderPipeline in k8s/examples/ passes
//! its schema strictly (an unknown field is an error, as with `kubectl apply
//! --validate=strict`) as well as the controller's own validation.

use std::path::{Path, PathBuf};

use kube::CustomResourceExt;
use orderflow_controller::{OrderPipeline, crd_yaml, refs, validate::validate};
use serde::Deserialize;
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_committed_crds_are_the_generated_one() {
    let generated = crd_yaml();
    for copy in ["k8s/crds/orderpipelines.yaml", "charts/orderflow/crds/orderpipelines.yaml"] {
        let committed = std::fs::read_to_string(repo().join(copy)).unwrap_or_else(|e| panic!("{copy}: {e}"));
        assert!(committed == generated, "{copy} is stale: run `cargo run -p orderflow-controller -- crd > {copy}`");
    }
}

/// The version's openAPIV3Schema as a strict JSON Schema (draft 4, which
/// OpenAPI 3.0 schemas follow): `nullable` becomes a null type and every
/// object with properties refuses others.
fn strict_schema() -> Value {
    let crd = serde_json::to_value(OrderPipeline::crd()).unwrap();
    let mut schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    fn tighten(node: &mut Value) {
        if let Value::Object(map) = node {
            if map.remove("nullable") == Some(json!(true))
                && let Some(Value::String(t)) = map.get("type").cloned()
            {
                map.insert("type".into(), json!([t, "null"]));
            }
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), json!(false));
            }
            for value in map.values_mut() {
                tighten(value);
            }
        } else if let Value::Array(items) = node {
            items.iter_mut().for_each(tighten);
        }
    }
    tighten(&mut schema);
    // apiVersion, kind and metadata are the API server's business.
    for field in ["apiVersion", "kind", "metadata"] {
        schema["properties"][field] = json!({});
    }
    schema
}

fn schema_errors(instance: &Value) -> Vec<String> {
    let validator = jsonschema::draft4::new(&strict_schema()).expect("the CRD schema compiles");
    validator.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path())).collect()
}

/// Every document of every `k8s/examples/*.yaml` (hidden files aside).
fn examples() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("k8s/examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "k8s/examples holds local.yaml and more: {files:?}");
    files
        .into_iter()
        .flat_map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            serde_yaml::Deserializer::from_str(&text)
                .map(|doc| (name.clone(), serde_json::to_value(serde_yaml::Value::deserialize(doc).unwrap()).unwrap()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_example_pipeline_passes_the_schema_and_the_controllers_validation() {
    let docs = examples();
    let pipelines: Vec<_> = docs.iter().filter(|(_, d)| d["kind"] == "OrderPipeline").collect();
    assert!(pipelines.iter().any(|(file, _)| file == "local.yaml"));
    for (file, doc) in &pipelines {
        assert_eq!(doc["apiVersion"], "orderflow.dev/v1alpha1", "{file}");
        let errors = schema_errors(doc);
        assert!(errors.is_empty(), "{file}: {errors:#?}");
        let pipeline: OrderPipeline = serde_json::from_value((*doc).clone()).unwrap();
        validate(&pipeline.spec).unwrap_or_else(|e| panic!("{file}: {e}"));
        // Where the file carries Secrets, they are the ones the pipeline needs.
        let namespace = pipeline.metadata.namespace.clone().unwrap();
        let secrets: Vec<k8s_openapi::api::core::v1::Secret> = docs
            .iter()
            .filter(|(f, d)| f == file && d["kind"] == "Secret")
            .map(|(_, d)| serde_json::from_value(d.clone()).unwrap())
            .collect();
        if !secrets.is_empty() {
            refs::credentials(&pipeline.spec, &namespace, |n| {
                secrets.iter().find(|s| s.metadata.name.as_deref() == Some(n)).cloned()
            })
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        }
    }
}

#[test]
fn the_local_example_points_at_the_local_servers() {
    let docs = examples();
    let (_, local) = docs.iter().find(|(f, d)| f == "local.yaml" && d["kind"] == "OrderPipeline").unwrap();
    assert_eq!(local["spec"]["sqs"]["endpoint"], "http://127.0.0.1:9324");
    assert_eq!(local["spec"]["databases"]["server"]["host"], "127.0.0.1");
    assert_eq!(local["spec"]["databases"]["server"]["port"], 5432);
    let (_, admin) = docs.iter().find(|(f, d)| f == "local.yaml" && d["kind"] == "Secret").unwrap();
    assert_eq!(admin["stringData"], json!({"username": "postgres", "password": ""}), "trust authentication");
}

#[test]
fn the_schema_refuses_what_the_controller_would_refuse() {
    let docs = examples();
    let (_, local) = docs.iter().find(|(f, d)| f == "local.yaml" && d["kind"] == "OrderPipeline").unwrap();
    let broken = |edit: &dyn Fn(&mut Value)| {
        let mut doc = local.clone();
        edit(&mut doc);
        schema_errors(&doc).join("\n")
    };
    let no_fifo = broken(&|d| d["spec"]["queues"]["orders"]["name"] = json!("orders-queue"));
    assert!(no_fifo.contains("does not match") && no_fifo.contains("/spec/queues/orders/name"), "{no_fifo}");
    let range = broken(&|d| d["spec"]["queues"]["orders"]["deadLetter"]["maxReceiveCount"] = json!(0));
    assert!(range.contains("minimum"), "{range}");
    let sql = broken(&|d| d["spec"]["databases"]["orders"]["role"] = json!("x; DROP ROLE postgres"));
    assert!(sql.contains("/spec/databases/orders/role"), "{sql}");
    let typo = broken(&|d| d["spec"]["deletionPolicyy"] = json!("Delete"));
    assert!(typo.contains("deletionPolicyy"), "unknown fields are errors: {typo}");
    let policy = broken(&|d| d["spec"]["deletionPolicy"] = json!("Orphan"));
    assert!(policy.contains("/spec/deletionPolicy"), "{policy}");
}
