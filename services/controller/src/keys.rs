//! The OrderPipeline's key Secrets through the Kubernetes API
//! ([`crate::plan::keys`] decides what they hold and when they go): read
//! them, create the absent ones, and hand the controller's own to the garbage
//! collector when the pipeline's databases are dropped. A present key Secret
//! is otherwise never written.
//!
//! Creation is a `POST`, not the server-side apply the other published
//! objects use: apply would overwrite a key someone put there meanwhile,
//! while a create loses the race (409 AlreadyExists) and leaves theirs,
//! which the next reconcile checks like any present Secret. The hand-over is
//! conditional on the `resourceVersion` that was read, so a Secret changed
//! in between stays.

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};

use crate::{
    engine::Change,
    plan::{
        keys::{self, Key, KeyPlan},
        publish::Owner,
    },
    resource::FIELD_MANAGER,
};

/// The key Secrets as read, one per [`Key`] (`None`: absent).
#[derive(Debug, Clone)]
pub struct Live(Vec<(Key, Option<Secret>)>);

/// What publishing the key Secrets did and found.
#[derive(Debug, Default)]
pub struct Published {
    /// One `KeyCreated` per Secret created.
    pub changes: Vec<Change>,
    /// Why a present key Secret cannot work (left as it is).
    pub unusable: Vec<String>,
}

/// Reads both key Secrets of `pipeline`.
pub async fn read(secrets: &Api<Secret>, pipeline: &str) -> Result<Live, kube::Error> {
    let mut live = Vec::new();
    for key in Key::ALL {
        live.push((key, secrets.get_opt(&key.secret_name(pipeline)).await?));
    }
    Ok(Live(live))
}

/// Creates the absent key Secrets; reports the unusable ones.
pub async fn publish(secrets: &Api<Secret>, owner: &Owner, live: Live) -> Result<Published, kube::Error> {
    let mut published = Published::default();
    let params = PostParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..Default::default() };
    for (key, secret) in live.0 {
        match keys::plan_key(owner, key, secret.as_ref()) {
            KeyPlan::Keep => {}
            KeyPlan::Unusable(message) => published.unusable.push(message),
            KeyPlan::Create(secret) => match secrets.create(&params, &secret).await {
                Ok(_) => {
                    let message = keys::describe_created(owner, key);
                    tracing::info!(reason = "KeyCreated", "{message}");
                    published.changes.push(Change { reason: "KeyCreated", message });
                }
                // Someone else's came first: theirs stands.
                Err(kube::Error::Api(status)) if status.is_already_exists() => {}
                Err(e) => return Err(e),
            },
        }
    }
    Ok(published)
}

/// Hands the key Secrets the controller made for `owner`'s pipeline to the
/// garbage collector (see [`keys::delete_with_pipeline`] for when): each gets
/// the pipeline as its owner, so it is deleted right after the pipeline.
/// Any other Secret of the same name is left alone.
pub async fn delete_with_pipeline(secrets: &Api<Secret>, owner: &Owner) -> Result<Vec<Change>, kube::Error> {
    let mut changes = Vec::new();
    for key in Key::ALL {
        let name = key.secret_name(&owner.name);
        let Some(secret) = secrets.get_opt(&name).await? else { continue };
        if !keys::made_by_controller(&secret, key) {
            continue;
        }
        let Some(patch) = keys::owner_patch(owner, &secret) else { continue };
        let params = PatchParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..Default::default() };
        match secrets.patch(&name, &params, &Patch::Strategic(patch)).await {
            Ok(_) => changes.push(Change {
                reason: "KeyDeleted",
                message: format!("Secret {name} is deleted with the OrderPipeline (owner reference added)"),
            }),
            // Gone, or changed since it was read: not ours to hand over any more.
            Err(kube::Error::Api(status)) if status.is_not_found() || status.is_conflict() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(changes)
}
