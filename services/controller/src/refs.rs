//! The Secrets an OrderPipeline refers to, turned into credentials; a missing
//! Secret or key is reported the way a person fixes it. Pure: the caller looks
//! the Secrets up (in the API, or in the file `reconcile-once` reads).

use k8s_openapi::api::core::v1::Secret;
use settings::SecretString;

use crate::{postgres::AdminCredentials, resource::OrderPipelineSpec, sqs::AwsCredentials};

/// A referenced Secret or one of its keys is missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MissingSecret(pub String);

/// The value of `key` in `secret` (`data`, or `stringData` as written in a file).
pub fn value(secret: &Secret, key: &str) -> Option<String> {
    if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
        return Some(v.clone());
    }
    secret.data.as_ref().and_then(|d| d.get(key)).map(|b| String::from_utf8_lossy(&b.0).into_owned())
}

fn required(secret: &Secret, namespace: &str, name: &str, key: &str, field: &str) -> Result<String, MissingSecret> {
    value(secret, key)
        .ok_or_else(|| MissingSecret(format!("Secret {namespace}/{name} (spec.{field}) has no key {key:?}: add it")))
}

fn missing(namespace: &str, name: &str, field: &str, keys: &str) -> MissingSecret {
    MissingSecret(format!("Secret {namespace}/{name} (spec.{field}) does not exist: create it with keys {keys}"))
}

/// The admin and SQS credentials of `spec`, from the Secrets `lookup` finds by name.
pub fn credentials(
    spec: &OrderPipelineSpec,
    namespace: &str,
    lookup: impl Fn(&str) -> Option<Secret>,
) -> Result<(AdminCredentials, Option<AwsCredentials>), MissingSecret> {
    Ok((admin(spec, namespace, &lookup)?, sqs(spec, namespace, &lookup)?))
}

/// The admin role's credentials (`databases.server.adminSecretRef`).
pub fn admin(
    spec: &OrderPipelineSpec,
    namespace: &str,
    lookup: impl Fn(&str) -> Option<Secret>,
) -> Result<AdminCredentials, MissingSecret> {
    let admin_ref = &spec.databases.server.admin_secret_ref.name;
    let field = "databases.server.adminSecretRef";
    let secret = lookup(admin_ref).ok_or_else(|| missing(namespace, admin_ref, field, "username, password"))?;
    let admin = AdminCredentials {
        username: required(&secret, namespace, admin_ref, "username", field)?,
        // Present but possibly empty, for trust authentication.
        password: SecretString::from(required(&secret, namespace, admin_ref, "password", field)?),
    };
    if admin.username == spec.databases.orders.role || admin.username == spec.databases.delivery.role {
        return Err(MissingSecret(format!(
            "the admin role {:?} cannot also be a service role: give the services their own roles",
            admin.username
        )));
    }
    Ok(admin)
}

/// The SQS credentials (`sqs.credentialsSecretRef`), when the spec names a Secret.
pub fn sqs(
    spec: &OrderPipelineSpec,
    namespace: &str,
    lookup: impl Fn(&str) -> Option<Secret>,
) -> Result<Option<AwsCredentials>, MissingSecret> {
    let Some(r) = &spec.sqs.credentials_secret_ref else {
        return Ok(None);
    };
    let field = "sqs.credentialsSecretRef";
    let secret = lookup(&r.name)
        .ok_or_else(|| missing(namespace, &r.name, field, "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY"))?;
    Ok(Some(AwsCredentials {
        access_key_id: required(&secret, namespace, &r.name, "AWS_ACCESS_KEY_ID", field)?,
        secret_access_key: required(&secret, namespace, &r.name, "AWS_SECRET_ACCESS_KEY", field)?.into(),
        session_token: value(&secret, "AWS_SESSION_TOKEN").map(SecretString::from),
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use settings::ExposeSecret;

    use super::*;
    use crate::{resource::SecretRef, testing::spec};

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        Secret {
            string_data: Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()),
            ..Default::default()
        }
    }

    #[test]
    fn the_admin_secret_gives_the_admin_credentials() {
        let (admin, sqs) =
            credentials(&spec("t1"), "ns", |_| Some(secret(&[("username", "postgres"), ("password", "")]))).unwrap();
        assert_eq!((admin.username.as_str(), admin.password.expose_secret()), ("postgres", ""));
        assert!(sqs.is_none());
    }

    #[test]
    fn a_missing_secret_or_key_says_what_to_create() {
        let err = credentials(&spec("t1"), "ns", |_| None).unwrap_err();
        assert_eq!(
            err.0,
            "Secret ns/postgres-admin (spec.databases.server.adminSecretRef) does not exist: create it with keys username, password"
        );
        let err = credentials(&spec("t1"), "ns", |_| Some(secret(&[("username", "postgres")]))).unwrap_err();
        assert!(err.0.contains("has no key \"password\""), "{err}");

        let mut s = spec("t1");
        s.sqs.credentials_secret_ref = Some(SecretRef { name: "aws".into() });
        let err = credentials(&s, "ns", |name| {
            (name == "postgres-admin").then(|| secret(&[("username", "postgres"), ("password", "pw")]))
        })
        .unwrap_err();
        assert!(err.0.starts_with("Secret ns/aws (spec.sqs.credentialsSecretRef) does not exist"), "{err}");
    }

    #[test]
    fn the_admin_cannot_double_as_a_service_role() {
        let err = credentials(&spec("t1"), "ns", |_| Some(secret(&[("username", "t1_orders"), ("password", "")])))
            .unwrap_err();
        assert!(err.0.contains("cannot also be a service role"), "{err}");
    }
}
