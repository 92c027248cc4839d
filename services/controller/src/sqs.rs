//! SQS, as the controller sees and changes it: reading queues into the
//! observed state the planner takes ([`crate::plan::queues`]), making the
//! planned calls, and deleting queues on deletion. The client comes from the
//! shared `messaging` crate; credentials from the spec's Secret replace the
//! default chain when given.

use std::{collections::BTreeMap, time::Duration};

use aws_sdk_sqs::{Client, config::Credentials, types::QueueAttributeName};
use messaging::SqsSettings;
use settings::{ExposeSecret, SecretString};

use crate::{
    plan::queues::{ObservedQueue, QueueAction, Redrive, attr, redrive_policy},
    resource::SqsSpec,
};

/// Static credentials from the `credentialsSecretRef` Secret.
#[derive(Clone, Debug)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub session_token: Option<SecretString>,
}

/// A failed SQS call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SqsError {
    /// `SqsUnavailable` (no answer: try again later) or `SqsRejected` (SQS said no).
    pub reason: &'static str,
    pub message: String,
}

impl SqsError {
    fn new<E: std::error::Error + 'static, R>(context: &str, e: aws_sdk_sqs::error::SdkError<E, R>) -> Self
    where
        R: std::fmt::Debug,
    {
        let reason = match &e {
            aws_sdk_sqs::error::SdkError::ServiceError(_) => "SqsRejected",
            _ => "SqsUnavailable",
        };
        SqsError { reason, message: format!("{context}: {}", aws_sdk_sqs::error::DisplayErrorContext(e)) }
    }
}

/// The SQS endpoint of one pipeline.
#[derive(Clone, Debug)]
pub struct Sqs {
    client: Client,
}

impl Sqs {
    /// A client for `spec` (connects lazily).
    pub async fn connect(spec: &SqsSpec, credentials: Option<&AwsCredentials>) -> Self {
        let settings = SqsSettings {
            endpoint_url: spec.endpoint.clone(),
            region: spec.region.clone(),
            attempt_timeout: Duration::from_secs(5),
        };
        let client = messaging::connect(&settings).await;
        let client = match credentials {
            None => client,
            Some(c) => {
                let credentials = Credentials::new(
                    &c.access_key_id,
                    c.secret_access_key.expose_secret(),
                    c.session_token.as_ref().map(|t| t.expose_secret().to_owned()),
                    None,
                    "orderpipeline-secret",
                );
                Client::from_conf(client.config().to_builder().credentials_provider(credentials).build())
            }
        };
        Self { client }
    }

    /// The queue named `name`, or `None` when it does not exist.
    #[tracing::instrument(skip(self))]
    pub async fn observe(&self, name: &str) -> Result<Option<ObservedQueue>, SqsError> {
        let url = match self.client.get_queue_url().queue_name(name).send().await {
            Ok(out) => out.queue_url.unwrap_or_default(),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_queue_does_not_exist()) => return Ok(None),
            Err(e) => return Err(SqsError::new(&format!("GetQueueUrl {name}"), e)),
        };
        let attributes = self.attributes(&url, name).await?;
        let arn = attributes.get(attr::QUEUE_ARN).cloned().unwrap_or_default();
        Ok(Some(ObservedQueue { url, arn, attributes }))
    }

    async fn attributes(&self, url: &str, name: &str) -> Result<BTreeMap<String, String>, SqsError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .map_err(|e| SqsError::new(&format!("GetQueueAttributes {name}"), e))?;
        Ok(out.attributes.unwrap_or_default().into_iter().map(|(k, v)| (k.as_str().to_owned(), v)).collect())
    }

    /// Makes one planned call. `known` holds every queue seen or created so
    /// far by name (a redrive policy needs its dead-letter queue's ARN); the
    /// queue this call creates is added to it.
    #[tracing::instrument(skip_all, fields(queue = action.queue_name()))]
    pub async fn apply(
        &self,
        action: &QueueAction,
        known: &mut BTreeMap<String, ObservedQueue>,
    ) -> Result<(), SqsError> {
        let redrive_json = |redrive: &Redrive, known: &BTreeMap<String, ObservedQueue>| -> Result<String, SqsError> {
            let dlq = known.get(&redrive.dead_letter_queue).ok_or_else(|| SqsError {
                reason: "SqsRejected",
                message: format!("dead-letter queue {} is missing", redrive.dead_letter_queue),
            })?;
            Ok(redrive_policy(&dlq.arn, redrive.max_receive_count))
        };
        match action {
            QueueAction::Create { queue } => {
                let mut request = self.client.create_queue().queue_name(&queue.name);
                for (name, value) in &queue.attributes {
                    request = request.attributes(QueueAttributeName::from(*name), value);
                }
                if let Some(redrive) = &queue.redrive {
                    request = request.attributes(QueueAttributeName::RedrivePolicy, redrive_json(redrive, known)?);
                }
                let url = request
                    .send()
                    .await
                    .map_err(|e| SqsError::new(&format!("CreateQueue {}", queue.name), e))?
                    .queue_url
                    .unwrap_or_default();
                let attributes = self.attributes(&url, &queue.name).await?;
                let arn = attributes.get(attr::QUEUE_ARN).cloned().unwrap_or_default();
                known.insert(queue.name.clone(), ObservedQueue { url, arn, attributes });
            }
            QueueAction::Repair { name, url, drift, redrive } => {
                let mut request = self.client.set_queue_attributes().queue_url(url);
                for d in drift {
                    request = request.attributes(QueueAttributeName::from(d.attribute), &d.desired);
                }
                if let Some(redrive) = redrive {
                    request = request.attributes(QueueAttributeName::RedrivePolicy, redrive_json(redrive, known)?);
                }
                request.send().await.map_err(|e| SqsError::new(&format!("SetQueueAttributes {name}"), e))?;
            }
        }
        Ok(())
    }

    /// Deletes queue `name`; `false` when it was already gone.
    #[tracing::instrument(skip(self))]
    pub async fn delete(&self, name: &str) -> Result<bool, SqsError> {
        let url = match self.client.get_queue_url().queue_name(name).send().await {
            Ok(out) => out.queue_url.unwrap_or_default(),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_queue_does_not_exist()) => return Ok(false),
            Err(e) => return Err(SqsError::new(&format!("GetQueueUrl {name}"), e)),
        };
        self.client
            .delete_queue()
            .queue_url(url)
            .send()
            .await
            .map_err(|e| SqsError::new(&format!("DeleteQueue {name}"), e))?;
        Ok(true)
    }
}
