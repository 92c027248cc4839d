//! The key Secrets of an OrderPipeline, decided without a client: the JWT
//! signing key (`<name>-jwt`, key `jwt.pem`: an Ed25519 private key as PKCS#8
//! PEM, what `order-service keys generate` prints) and the key generated
//! client secrets are stored under (`<name>-client-secret-key`, key
//! `client-secret.key`: 256 random bits as URL-safe base64, what
//! `order-service keys client-secret-key` prints). The order API mounts both
//! as files (`JWT_PRIVATE_KEY_FILE`, `CLIENT_SECRET_KEY_FILE`).
//!
//! Each is created once, when absent, and never changed: not when its
//! contents look wrong (that is reported, see [`plan_key`]), not when the
//! spec changes. Deleting the Secret is how a person asks for a new key; the
//! next reconcile creates one. This is what makes `helm template` renderers
//! (Argo CD, Flux, Tilt) safe: the chart renders no key, so a render cannot
//! rotate one.
//!
//! No owner reference, unlike the `DATABASE_URL` Secrets: those are derived
//! (the controller sets the role's password again if one is lost), these are
//! not. The client-secret key is needed for as long as the HMAC-stored
//! client secrets in the orders database exist, and the signing key for as
//! long as the tokens it signed are in use; both outlive an OrderPipeline
//! deleted under `deletionPolicy: Retain` (`helm uninstall`, then a
//! reinstall that finds the retained databases). Garbage collection would
//! delete them with the pipeline, so they get an owner reference only when
//! the pipeline is being deleted and its databases go too
//! ([`delete_with_pipeline`], [`owner_patch`]): the garbage collector then
//! deletes them after it, and the controller needs no `delete` permission.

use std::collections::BTreeMap;

use k8s_openapi::{ByteString, api::core::v1::Secret};

use super::publish::{MANAGED_BY, Owner};
use crate::resource::{DeletionPolicy, OrderPipelineSpec};

/// Label on a key Secret naming which key it holds (`jwt`, `client-secret-key`).
pub const KEY_LABEL: &str = "orderflow.dev/key";
/// Annotation telling whoever looks at a key Secret how it is managed.
pub const DESCRIPTION: &str = "orderflow.dev/description";

/// One of the keys the controller keeps for the order API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    /// `JWT_PRIVATE_KEY_FILE`: signs access tokens.
    Signing,
    /// `CLIENT_SECRET_KEY_FILE`: the HMAC key of generated client secrets.
    ClientSecret,
}

impl Key {
    pub const ALL: [Key; 2] = [Key::Signing, Key::ClientSecret];

    /// The label value and the suffix of the Secret's name.
    pub fn id(self) -> &'static str {
        match self {
            Key::Signing => "jwt",
            Key::ClientSecret => "client-secret-key",
        }
    }

    /// The Secret's name: `<pipeline>-jwt` or `<pipeline>-client-secret-key`.
    pub fn secret_name(self, pipeline: &str) -> String {
        format!("{pipeline}-{}", self.id())
    }

    /// The key inside the Secret (the file name in the pod).
    pub fn data_key(self) -> &'static str {
        match self {
            Key::Signing => "jwt.pem",
            Key::ClientSecret => "client-secret.key",
        }
    }

    /// For Events and messages.
    pub fn what(self) -> &'static str {
        match self {
            Key::Signing => "JWT signing key (Ed25519, PKCS#8 PEM)",
            Key::ClientSecret => "client secret key (HMAC-SHA-256)",
        }
    }

    /// New key material.
    pub fn generate(self) -> String {
        match self {
            Key::Signing => keygen::ed25519_private_key_pem(),
            Key::ClientSecret => keygen::client_secret_key() + "\n",
        }
    }

    /// Whether `text` is usable as this key; the error never shows the key.
    pub fn check(self, text: &str) -> Result<(), String> {
        match self {
            Key::Signing => keygen::check_signing_key(text),
            Key::ClientSecret => keygen::check_client_secret_key(text),
        }
    }

    fn consequence(self) -> &'static str {
        match self {
            Key::Signing => "tokens it signed stop verifying",
            Key::ClientSecret => "every HMAC-stored client secret stops working (re-create those clients)",
        }
    }
}

/// What to do about one key Secret.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyPlan {
    /// Absent: create this Secret.
    Create(Box<Secret>),
    /// Present and usable: nothing to do, ever.
    Keep,
    /// Present but not usable; left as it is (a person's edit is not undone),
    /// and the message says what to do.
    Unusable(String),
}

/// The key Secret `key` as the controller creates it, holding `material`.
pub fn key_secret(owner: &Owner, key: Key, material: &str) -> Secret {
    let mut metadata = owner.unowned_meta(key.secret_name(&owner.name));
    metadata.labels.get_or_insert_default().insert(KEY_LABEL.to_owned(), key.id().to_owned());
    metadata.annotations = Some(BTreeMap::from([(
        DESCRIPTION.to_owned(),
        format!(
            "The {} of OrderPipeline {}: created once by orderflow-controller, never changed by it. \
             Delete this Secret to get a new key ({}).",
            key.what(),
            owner.name,
            key.consequence()
        ),
    )]));
    Secret {
        metadata,
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(key.data_key().to_owned(), ByteString(material.as_bytes().to_vec()))])),
        ..Default::default()
    }
}

/// Create when absent, keep when present; a present Secret that cannot work
/// is reported, not replaced.
pub fn plan_key(owner: &Owner, key: Key, live: Option<&Secret>) -> KeyPlan {
    let Some(live) = live else {
        return KeyPlan::Create(Box::new(key_secret(owner, key, &key.generate())));
    };
    let name = key.secret_name(&owner.name);
    let problem = match live.data.as_ref().and_then(|d| d.get(key.data_key())) {
        None => format!("has no key {}", key.data_key()),
        Some(bytes) => match std::str::from_utf8(&bytes.0) {
            Err(_) => format!("{} is not text", key.data_key()),
            Ok(text) => match key.check(text) {
                Ok(()) => return KeyPlan::Keep,
                Err(e) => format!("{}: {e}", key.data_key()),
            },
        },
    };
    KeyPlan::Unusable(format!(
        "Secret {name} {problem}; the controller never changes an existing key Secret: fix it, \
         or delete it for a new {} ({})",
        key.what(),
        key.consequence()
    ))
}

/// The Event message for a created key Secret.
pub fn describe_created(owner: &Owner, key: Key) -> String {
    format!("created Secret {} with a new {}", key.secret_name(&owner.name), key.what())
}

/// Whether deleting the pipeline deletes its key Secrets: only when the
/// databases whose client secrets the key protects are dropped as well.
pub fn delete_with_pipeline(spec: &OrderPipelineSpec) -> bool {
    spec.deletion_policy == DeletionPolicy::Delete && spec.drop_databases_on_delete
}

/// The strategic merge patch that makes `owner` the owner of the live key
/// Secret, so the garbage collector deletes it once the pipeline is gone.
/// It carries the `resourceVersion` read, so a Secret changed since is not
/// handed over (409 Conflict). `None` without an owner uid.
pub fn owner_patch(owner: &Owner, live: &Secret) -> Option<serde_json::Value> {
    let reference = owner.reference()?;
    Some(serde_json::json!({"metadata": {
        "resourceVersion": live.metadata.resource_version,
        "ownerReferences": [reference],
    }}))
}

/// Whether `secret` is one the controller made for `key` (a Secret of that
/// name that a person or Helm made is never deleted by the controller).
pub fn made_by_controller(secret: &Secret, key: Key) -> bool {
    let labels = secret.metadata.labels.clone().unwrap_or_default();
    labels.get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1)
        && labels.get(KEY_LABEL).map(String::as_str) == Some(key.id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::spec;

    fn owner() -> Owner {
        Owner { name: "demo".into(), namespace: "orderflow".into(), uid: Some("uid-1".into()) }
    }

    fn material(secret: &Secret, key: Key) -> String {
        String::from_utf8(secret.data.as_ref().unwrap()[key.data_key()].0.clone()).unwrap()
    }

    #[test]
    fn absent_keys_are_created_with_usable_material_and_no_owner() {
        for key in Key::ALL {
            let KeyPlan::Create(secret) = plan_key(&owner(), key, None) else { panic!("{key:?} is created") };
            assert_eq!(secret.metadata.name, Some(format!("demo-{}", key.id())));
            assert_eq!(secret.metadata.owner_references, None, "{key:?} must outlive the pipeline");
            let labels = secret.metadata.labels.clone().unwrap();
            assert_eq!(labels[KEY_LABEL], key.id());
            assert!(made_by_controller(&secret, key));
            assert_eq!(key.check(&material(&secret, key)), Ok(()));
            let KeyPlan::Create(other) = plan_key(&owner(), key, None) else { unreachable!() };
            assert_ne!(material(&secret, key), material(&other, key), "a new key each time");
        }
        let KeyPlan::Create(jwt) = plan_key(&owner(), Key::Signing, None) else { unreachable!() };
        assert!(material(&jwt, Key::Signing).starts_with("-----BEGIN PRIVATE KEY-----\n"));
    }

    #[test]
    fn a_present_key_is_kept_whoever_made_it() {
        let made = key_secret(&owner(), Key::Signing, &Key::Signing.generate());
        assert_eq!(plan_key(&owner(), Key::Signing, Some(&made)), KeyPlan::Keep);
        // One a person made (say, from a sealed secret), with other labels and a bundle.
        let bundle = format!("{}{}", keygen::ed25519_private_key_pem(), keygen::ed25519_private_key_pem());
        let mut theirs = key_secret(&owner(), Key::Signing, &bundle);
        theirs.metadata.labels = None;
        assert_eq!(plan_key(&owner(), Key::Signing, Some(&theirs)), KeyPlan::Keep);
        assert!(!made_by_controller(&theirs, Key::Signing), "and never deleted by the controller");
    }

    #[test]
    fn a_present_but_unusable_key_is_reported_and_left_alone() {
        let short = key_secret(&owner(), Key::ClientSecret, "too-short");
        let KeyPlan::Unusable(message) = plan_key(&owner(), Key::ClientSecret, Some(&short)) else { panic!() };
        assert!(message.starts_with("Secret demo-client-secret-key client-secret.key: 9 bytes"), "{message}");
        assert!(!message.contains("too-short"), "never the key itself: {message}");
        let empty = Secret { data: None, ..short };
        let KeyPlan::Unusable(message) = plan_key(&owner(), Key::Signing, Some(&empty)) else { panic!() };
        assert!(message.contains("has no key jwt.pem") && message.contains("delete it"), "{message}");
    }

    #[test]
    fn a_key_secret_is_handed_to_the_pipeline_only_as_it_was_read() {
        let mut live = key_secret(&owner(), Key::Signing, "pem");
        live.metadata.resource_version = Some("7".into());
        let patch = owner_patch(&owner(), &live).unwrap();
        assert_eq!(patch["metadata"]["resourceVersion"], "7");
        let reference = &patch["metadata"]["ownerReferences"][0];
        assert_eq!((reference["kind"].as_str(), reference["uid"].as_str()), (Some("OrderPipeline"), Some("uid-1")));
        let no_uid = Owner { uid: None, ..owner() };
        assert_eq!(owner_patch(&no_uid, &live), None);
    }

    #[test]
    fn key_secrets_go_only_with_the_databases() {
        let mut s = spec("t1");
        assert!(!delete_with_pipeline(&s), "Retain keeps them");
        s.deletion_policy = DeletionPolicy::Delete;
        assert!(!delete_with_pipeline(&s), "the databases stay, so do the keys their client secrets need");
        s.drop_databases_on_delete = true;
        assert!(delete_with_pipeline(&s));
    }
}
