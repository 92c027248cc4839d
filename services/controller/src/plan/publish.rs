//! What the controller publishes for the services, and whether what is there
//! already says it: ConfigMap `<name>-config` (queue settings) and Secrets
//! `<name>-orders-db` / `<name>-delivery-db` (`DATABASE_URL` with the role's
//! password), labelled and owned by the OrderPipeline so that deleting it
//! deletes them. The services read them with `envFrom`.
//!
//! A published Secret is also where a role's password is kept: the next
//! reconcile reads it back ([`kept_password`]) instead of generating another.

use std::collections::BTreeMap;

use k8s_openapi::{
    ByteString,
    api::core::v1::{ConfigMap, Secret},
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use settings::{ExposeSecret, SecretString};

use super::databases::Service;
use crate::resource::{API_VERSION, DatabaseSpec, OrderPipeline, OrderPipelineSpec, ServerSpec};

/// The key of the connection string in each Secret.
pub const DATABASE_URL: &str = "DATABASE_URL";
/// Labels on everything published; the controller watches only these.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "orderflow-controller");
pub const PART_OF: (&str, &str) = ("app.kubernetes.io/part-of", "orderflow");
pub const PIPELINE_LABEL: &str = "orderflow.dev/pipeline";

/// The OrderPipeline the published objects belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub name: String,
    pub namespace: String,
    /// `metadata.uid`; without it (a file read by `reconcile-once`) no owner
    /// reference can be written.
    pub uid: Option<String>,
}

impl Owner {
    pub(crate) fn reference(&self) -> Option<OwnerReference> {
        self.uid.as_ref().map(|uid| OwnerReference {
            api_version: API_VERSION.to_owned(),
            kind: "OrderPipeline".to_owned(),
            name: self.name.clone(),
            uid: uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        })
    }

    fn meta(&self, name: String) -> ObjectMeta {
        ObjectMeta { owner_references: self.reference().map(|r| vec![r]), ..self.unowned_meta(name) }
    }

    /// Name, namespace and the labels the controller watches, without an owner
    /// reference: for what must outlive the OrderPipeline ([`super::keys`]).
    pub(crate) fn unowned_meta(&self, name: String) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
                (PART_OF.0.to_owned(), PART_OF.1.to_owned()),
                (PIPELINE_LABEL.to_owned(), self.name.clone()),
            ])),
            ..Default::default()
        }
    }
}

/// The three objects, as they should be.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub config: ConfigMap,
    pub orders_db: Secret,
    pub delivery_db: Secret,
}

impl Published {
    pub fn secret(&self, service: Service) -> &Secret {
        match service {
            Service::Orders => &self.orders_db,
            Service::Delivery => &self.delivery_db,
        }
    }
}

/// `postgres://role:password@host:port/database?sslmode=...`.
pub fn database_url(server: &ServerSpec, db: &DatabaseSpec, password: &SecretString) -> SecretString {
    let mut url = url::Url::parse("postgres://localhost/").expect("static URL");
    // Host, role and database names passed validation (no characters that need escaping).
    url.set_host(Some(&server.host)).expect("validated host");
    url.set_port(Some(server.port)).expect("postgres URLs take a port");
    url.set_username(&db.role).expect("postgres URLs take a user");
    // Generated passwords are letters and digits; anything else is percent-encoded in full.
    url.set_password(Some(&percent_encode(password.expose_secret()))).expect("postgres URLs take a password");
    url.set_path(&db.name);
    url.query_pairs_mut().append_pair("sslmode", server.ssl_mode.as_str());
    SecretString::from(url.to_string())
}

/// The password in a published `DATABASE_URL`, if it is for `role`.
pub fn kept_password(secret: &Secret, role: &str) -> Option<SecretString> {
    let raw = secret.data.as_ref()?.get(DATABASE_URL)?;
    let url = url::Url::parse(std::str::from_utf8(&raw.0).ok()?).ok()?;
    if url.username() != role {
        return None;
    }
    let password = url.password()?;
    let decoded = percent_decode(password)?;
    (!decoded.is_empty()).then(|| SecretString::from(decoded))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The ConfigMap's keys: what both services need to find their queues.
pub fn config_data(spec: &OrderPipelineSpec) -> BTreeMap<String, String> {
    let mut data = BTreeMap::from([
        ("AWS_REGION".to_owned(), spec.sqs.region.clone()),
        ("ORDERS_QUEUE".to_owned(), spec.queues.orders.name.clone()),
        ("DELIVERY_STATUS_QUEUE".to_owned(), spec.queues.delivery_status.name.clone()),
    ]);
    if let Some(endpoint) = &spec.sqs.endpoint {
        data.insert("SQS_ENDPOINT_URL".to_owned(), endpoint.clone());
    }
    data
}

/// The ConfigMap `<name>-config`.
pub fn config_map(owner: &Owner, spec: &OrderPipelineSpec) -> ConfigMap {
    ConfigMap {
        metadata: owner.meta(OrderPipeline::config_map_name(&owner.name)),
        data: Some(config_data(spec)),
        ..Default::default()
    }
}

/// The Secret `<name>-orders-db` or `<name>-delivery-db` with `password`.
pub fn secret(owner: &Owner, spec: &OrderPipelineSpec, service: Service, password: &SecretString) -> Secret {
    let name = match service {
        Service::Orders => OrderPipeline::orders_secret_name(&owner.name),
        Service::Delivery => OrderPipeline::delivery_secret_name(&owner.name),
    };
    let url = database_url(&spec.databases.server, service.spec(spec), password);
    Secret {
        metadata: owner.meta(name),
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(DATABASE_URL.to_owned(), ByteString(url.expose_secret().as_bytes().to_vec()))])),
        ..Default::default()
    }
}

/// The three objects, given both roles' passwords.
pub fn desired(owner: &Owner, spec: &OrderPipelineSpec, passwords: &BTreeMap<Service, SecretString>) -> Published {
    let password = |service| passwords.get(&service).expect("a password for each service");
    Published {
        config: config_map(owner, spec),
        orders_db: secret(owner, spec, Service::Orders, password(Service::Orders)),
        delivery_db: secret(owner, spec, Service::Delivery, password(Service::Delivery)),
    }
}

/// Whether `live` lacks a label or owner reference of `want`. Labels and
/// annotations others add are left alone.
fn meta_differs(want: &ObjectMeta, live: &ObjectMeta) -> bool {
    let live_labels = live.labels.clone().unwrap_or_default();
    let labels_missing = want.labels.iter().flatten().any(|(k, v)| live_labels.get(k) != Some(v));
    let live_owners = live.owner_references.clone().unwrap_or_default();
    let owner_missing = want.owner_references.iter().flatten().any(|o| !live_owners.iter().any(|l| l.uid == o.uid));
    labels_missing || owner_missing
}

/// Whether the ConfigMap must be (re)published.
pub fn config_differs(want: &ConfigMap, live: Option<&ConfigMap>) -> bool {
    live.is_none_or(|live| want.data != live.data || meta_differs(&want.metadata, &live.metadata))
}

/// Whether a Secret must be (re)published.
pub fn secret_differs(want: &Secret, live: Option<&Secret>) -> bool {
    live.is_none_or(|live| want.data != live.data || meta_differs(&want.metadata, &live.metadata))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::spec;

    fn owner() -> Owner {
        Owner { name: "demo".into(), namespace: "orderflow".into(), uid: Some("uid-1".into()) }
    }

    fn passwords() -> BTreeMap<Service, SecretString> {
        BTreeMap::from([(Service::Orders, "pw1".into()), (Service::Delivery, "pw2".into())])
    }

    #[test]
    fn a_fresh_pipeline_publishes_the_config_and_one_secret_per_service() {
        let s = spec("t1");
        let p = desired(&owner(), &s, &passwords());
        assert_eq!(p.config.metadata.name.as_deref(), Some("demo-config"));
        let data = p.config.data.clone().unwrap();
        assert_eq!(data["ORDERS_QUEUE"], "t1-orders-queue.fifo");
        assert_eq!(data["DELIVERY_STATUS_QUEUE"], "t1-status-queue.fifo");
        assert_eq!(data["AWS_REGION"], "us-east-1");
        assert_eq!(data["SQS_ENDPOINT_URL"], "http://127.0.0.1:9324");
        let url = String::from_utf8(p.orders_db.data.as_ref().unwrap()[DATABASE_URL].0.clone()).unwrap();
        assert_eq!(url, "postgres://t1_orders:pw1@127.0.0.1:5432/t1_orders?sslmode=disable");
        assert_eq!(p.delivery_db.metadata.name.as_deref(), Some("demo-delivery-db"));
        let owner_ref = &p.orders_db.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner_ref.kind.as_str(), owner_ref.uid.as_str(), owner_ref.controller),
            ("OrderPipeline", "uid-1", Some(true))
        );
        assert!(config_differs(&p.config, None));
        assert!(secret_differs(&p.orders_db, None));
    }

    #[test]
    fn published_objects_that_say_the_same_are_left_alone() {
        let s = spec("t1");
        let p = desired(&owner(), &s, &passwords());
        let mut live = p.orders_db.clone();
        live.metadata.labels.as_mut().unwrap().insert("team".into(), "payments".into());
        live.metadata.resource_version = Some("42".into());
        assert!(!secret_differs(&p.orders_db, Some(&live)));
        assert!(!config_differs(&p.config, Some(&p.config.clone())));
    }

    #[test]
    fn drifted_published_objects_are_published_again() {
        let s = spec("t1");
        let p = desired(&owner(), &s, &passwords());
        let mut edited = p.config.clone();
        edited.data.as_mut().unwrap().insert("ORDERS_QUEUE".into(), "other.fifo".into());
        assert!(config_differs(&p.config, Some(&edited)));
        let mut orphaned = p.delivery_db.clone();
        orphaned.metadata.owner_references = None;
        assert!(secret_differs(&p.delivery_db, Some(&orphaned)));
    }

    #[test]
    fn the_kept_password_is_read_back_only_for_the_same_role() {
        let s = spec("t1");
        let p = desired(&owner(), &s, &passwords());
        assert_eq!(kept_password(&p.orders_db, "t1_orders").map(|p| p.expose_secret().to_owned()), Some("pw1".into()));
        assert!(kept_password(&p.orders_db, "another_role").is_none());
        assert!(kept_password(&Secret::default(), "t1_orders").is_none());
    }

    #[test]
    fn passwords_with_url_characters_survive_the_round_trip() {
        let s = spec("t1");
        let passwords = BTreeMap::from([(Service::Orders, "p@ss:w/rd%".into()), (Service::Delivery, "x".into())]);
        let p = desired(&owner(), &s, &passwords);
        assert_eq!(
            kept_password(&p.orders_db, "t1_orders").map(|p| p.expose_secret().to_owned()),
            Some("p@ss:w/rd%".into())
        );
    }
}
