//! Building an `aws_sdk_sqs::Client` from orderflow settings.
//!
//! With an endpoint override (the local emulator) and no AWS credentials in the
//! environment, static dummy credentials are used: emulators accept any, and a
//! fresh developer machine has none. In AWS the default credential chain
//! (IRSA, instance profile, environment) applies.

use std::time::Duration;

use aws_config::{BehaviorVersion, Region, retry::RetryConfig, timeout::TimeoutConfig};
use aws_sdk_sqs::config::Credentials;

/// Where and how to reach SQS.
#[derive(Debug, Clone)]
pub struct SqsSettings {
    /// Endpoint override, e.g. `http://127.0.0.1:9324` for the emulator; `None` for AWS.
    pub endpoint_url: Option<String>,
    /// AWS region of the queues.
    pub region: String,
    /// Upper bound on one HTTP attempt. Long polls add their wait time to it.
    pub attempt_timeout: Duration,
}

/// The `SQS_*` variables, for the configuration reference.
pub const SQS_SETTINGS: &[settings::Doc] = &[
    settings::Doc::deployer(
        "SQS_ENDPOINT_URL",
        "SQS endpoint override, e.g. `http://127.0.0.1:9324` for an emulator; unset, AWS",
    ),
    settings::Doc::deployer("AWS_REGION", "region of the queues"),
    settings::Doc::tuning("SQS_TIMEOUT", "longest SQS call (long polls add their wait)"),
    settings::Doc::tuning(
        "ORDERS_QUEUE",
        "the FIFO queue of orders: the order-service publishes to it, the delivery-service consumes it",
    ),
    settings::Doc::tuning(
        "DELIVERY_STATUS_QUEUE",
        "the FIFO queue of status events: the delivery-service publishes to it, the order-service consumes it",
    ),
    settings::Doc::development(
        "SQS_CREATE_QUEUES",
        "create the queues with their DLQs at start-up (tests and benchmarks; `make run` and the cluster leave the queues to the controller)",
    ),
    settings::Doc::tuning(
        "SQS_MAX_RECEIVE_COUNT",
        "receives before a message goes to its DLQ, when this process creates the queues",
    ),
];

impl SqsSettings {
    /// Reads `SQS_ENDPOINT_URL`, `AWS_REGION` and `SQS_TIMEOUT`.
    pub fn from_env(env: &mut settings::Env) -> Self {
        Self {
            endpoint_url: env.optional("SQS_ENDPOINT_URL"),
            region: env.get("AWS_REGION", "us-east-1".to_owned()),
            attempt_timeout: env.duration("SQS_TIMEOUT", Duration::from_secs(5)),
        }
    }

    pub fn local(endpoint_url: impl Into<String>) -> Self {
        Self {
            endpoint_url: Some(endpoint_url.into()),
            region: "us-east-1".into(),
            attempt_timeout: Duration::from_secs(5),
        }
    }
}

/// Builds the client. It connects lazily: an unreachable SQS shows up on the
/// first call, not here, so services start (and accept orders) without it.
pub async fn connect(settings: &SqsSettings) -> aws_sdk_sqs::Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(settings.region.clone()))
        .retry_config(RetryConfig::standard().with_max_attempts(2))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                // Long polls wait up to 20 s server-side; leave room for them.
                .operation_attempt_timeout(settings.attempt_timeout + Duration::from_secs(20))
                .build(),
        );
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url);
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            loader =
                loader.credentials_provider(Credentials::new("orderflow", "orderflow", None, None, "static-local"));
        }
    }
    aws_sdk_sqs::Client::new(&loader.load().await)
}
