//! Queue decisions: from a spec and the queues SQS reports, the calls that make
//! them match. Dead-letter queues come first, so the redrive policy of each
//! main queue can point at its dead-letter queue's ARN. A queue that exists is
//! adopted, whoever created it; an attribute that drifted is set back with
//! `SetQueueAttributes`; a queue is never deleted and re-created to change it.

use std::collections::BTreeMap;

use crate::resource::{OrderPipelineSpec, QueueSpec};

/// SQS attribute names the controller manages.
pub mod attr {
    pub const FIFO_QUEUE: &str = "FifoQueue";
    pub const VISIBILITY_TIMEOUT: &str = "VisibilityTimeout";
    pub const MESSAGE_RETENTION_PERIOD: &str = "MessageRetentionPeriod";
    pub const RECEIVE_MESSAGE_WAIT_TIME: &str = "ReceiveMessageWaitTimeSeconds";
    pub const REDRIVE_POLICY: &str = "RedrivePolicy";
    pub const QUEUE_ARN: &str = "QueueArn";
}

/// Where a queue's failed messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redrive {
    /// Name of the dead-letter queue (its ARN is resolved when the call is made).
    pub dead_letter_queue: String,
    pub max_receive_count: u32,
}

/// A queue as the spec wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredQueue {
    pub name: String,
    /// Plain attributes (everything but the redrive policy), SQS spelling.
    pub attributes: BTreeMap<&'static str, String>,
    pub redrive: Option<Redrive>,
}

/// A queue as SQS reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedQueue {
    pub url: String,
    pub arn: String,
    /// Every attribute `GetQueueAttributes(All)` returned.
    pub attributes: BTreeMap<String, String>,
}

/// One attribute whose live value differs from the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub attribute: &'static str,
    pub live: Option<String>,
    pub desired: String,
}

/// A call to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueAction {
    /// `CreateQueue` with every attribute (and the redrive policy).
    Create { queue: DesiredQueue },
    /// `SetQueueAttributes` with only the attributes that drifted.
    Repair { name: String, url: String, drift: Vec<Drift>, redrive: Option<Redrive> },
}

impl QueueAction {
    pub fn queue_name(&self) -> &str {
        match self {
            QueueAction::Create { queue } => &queue.name,
            QueueAction::Repair { name, .. } => name,
        }
    }
}

/// The four queues in the order they must be reconciled: each dead-letter
/// queue before the queue that redrives to it.
pub fn desired_queues(spec: &OrderPipelineSpec) -> Vec<DesiredQueue> {
    [&spec.queues.orders, &spec.queues.delivery_status].into_iter().flat_map(desired_pair).collect()
}

fn desired_pair(q: &QueueSpec) -> [DesiredQueue; 2] {
    let dlq = DesiredQueue {
        name: q.dead_letter.name.clone(),
        attributes: BTreeMap::from([
            (attr::FIFO_QUEUE, "true".to_owned()),
            (attr::MESSAGE_RETENTION_PERIOD, q.dead_letter.message_retention_seconds.to_string()),
        ]),
        redrive: None,
    };
    let main = DesiredQueue {
        name: q.name.clone(),
        attributes: BTreeMap::from([
            (attr::FIFO_QUEUE, "true".to_owned()),
            (attr::VISIBILITY_TIMEOUT, q.visibility_timeout_seconds.to_string()),
            (attr::MESSAGE_RETENTION_PERIOD, q.message_retention_seconds.to_string()),
            (attr::RECEIVE_MESSAGE_WAIT_TIME, q.receive_wait_time_seconds.to_string()),
        ]),
        redrive: Some(Redrive {
            dead_letter_queue: q.dead_letter.name.clone(),
            max_receive_count: q.dead_letter.max_receive_count,
        }),
    };
    [dlq, main]
}

/// The redrive policy document SQS expects.
pub fn redrive_policy(dead_letter_arn: &str, max_receive_count: u32) -> String {
    serde_json::json!({"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": max_receive_count}).to_string()
}

/// Whether a live `RedrivePolicy` sends to `want`'s queue after `want`'s count.
/// Queue ARNs end in `:<queue name>`; `maxReceiveCount` may come back as a
/// number or a string depending on the implementation.
fn redrive_matches(live: Option<&String>, want: &Redrive) -> bool {
    let Some(doc) = live.and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok()) else {
        return false;
    };
    let arn_ok = doc["deadLetterTargetArn"]
        .as_str()
        .and_then(|arn| arn.rsplit_once(':'))
        .is_some_and(|(_, name)| name == want.dead_letter_queue);
    let count = match &doc["maxReceiveCount"] {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    };
    arn_ok && count == Some(u64::from(want.max_receive_count))
}

/// The call that makes `observed` match `desired`, or none when it already does.
pub fn plan_queue(desired: &DesiredQueue, observed: Option<&ObservedQueue>) -> Option<QueueAction> {
    let Some(live) = observed else {
        return Some(QueueAction::Create { queue: desired.clone() });
    };
    let drift: Vec<Drift> = desired
        .attributes
        .iter()
        // FifoQueue cannot change after creation, and a name ending in .fifo is always FIFO.
        .filter(|(name, _)| **name != attr::FIFO_QUEUE)
        .filter(|(name, want)| live.attributes.get(**name) != Some(*want))
        .map(|(name, want)| Drift { attribute: name, live: live.attributes.get(*name).cloned(), desired: want.clone() })
        .collect();
    let redrive =
        desired.redrive.clone().filter(|want| !redrive_matches(live.attributes.get(attr::REDRIVE_POLICY), want));
    if drift.is_empty() && redrive.is_none() {
        return None;
    }
    Some(QueueAction::Repair { name: desired.name.clone(), url: live.url.clone(), drift, redrive })
}

/// Every call for the pipeline's queues, in order, given what SQS reports
/// (keyed by queue name; a missing key is a missing queue).
pub fn plan_queues(spec: &OrderPipelineSpec, observed: &BTreeMap<String, ObservedQueue>) -> Vec<QueueAction> {
    desired_queues(spec).iter().filter_map(|q| plan_queue(q, observed.get(&q.name))).collect()
}

/// A one-line account of an action, for Events and logs.
pub fn describe(action: &QueueAction) -> String {
    match action {
        QueueAction::Create { queue } => match &queue.redrive {
            Some(r) => format!(
                "created SQS queue {} (redrive to {} after {} receives)",
                queue.name, r.dead_letter_queue, r.max_receive_count
            ),
            None => format!("created SQS queue {}", queue.name),
        },
        QueueAction::Repair { name, drift, redrive, .. } => {
            let mut parts: Vec<String> = drift
                .iter()
                .map(|d| format!("{} {} -> {}", d.attribute, d.live.as_deref().unwrap_or("unset"), d.desired))
                .collect();
            if let Some(r) = redrive {
                parts.push(format!("RedrivePolicy -> {} after {} receives", r.dead_letter_queue, r.max_receive_count));
            }
            format!("repaired drifted attributes of SQS queue {name}: {}", parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::spec;

    /// What SQS would report for a queue created exactly as `desired` says.
    fn live(desired: &DesiredQueue) -> ObservedQueue {
        let arn = format!("arn:aws:sqs:us-east-1:000000000000:{}", desired.name);
        let mut attributes: BTreeMap<String, String> =
            desired.attributes.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        attributes.insert("ApproximateNumberOfMessages".into(), "0".into());
        if let Some(r) = &desired.redrive {
            let dlq_arn = format!("arn:aws:sqs:us-east-1:000000000000:{}", r.dead_letter_queue);
            attributes.insert(attr::REDRIVE_POLICY.into(), redrive_policy(&dlq_arn, r.max_receive_count));
        }
        ObservedQueue { url: format!("http://sqs/000000000000/{}", desired.name), arn, attributes }
    }

    fn up_to_date(spec: &OrderPipelineSpec) -> BTreeMap<String, ObservedQueue> {
        desired_queues(spec).iter().map(|q| (q.name.clone(), live(q))).collect()
    }

    #[test]
    fn a_fresh_pipeline_creates_each_dead_letter_queue_before_its_queue() {
        let s = spec("t1");
        let actions = plan_queues(&s, &BTreeMap::new());
        let created: Vec<&str> = actions.iter().map(QueueAction::queue_name).collect();
        assert_eq!(
            created,
            ["t1-orders-queue-dlq.fifo", "t1-orders-queue.fifo", "t1-status-queue-dlq.fifo", "t1-status-queue.fifo"]
        );
        let QueueAction::Create { queue } = &actions[1] else { panic!("create expected: {actions:?}") };
        assert_eq!(
            queue.redrive,
            Some(Redrive { dead_letter_queue: "t1-orders-queue-dlq.fifo".into(), max_receive_count: 5 })
        );
        assert_eq!(queue.attributes[attr::VISIBILITY_TIMEOUT], "30");
        assert_eq!(queue.attributes[attr::RECEIVE_MESSAGE_WAIT_TIME], "20");
        assert_eq!(queue.attributes[attr::FIFO_QUEUE], "true");
        let QueueAction::Create { queue: dlq } = &actions[0] else { panic!() };
        assert_eq!(dlq.attributes[attr::MESSAGE_RETENTION_PERIOD], "1209600");
        assert_eq!(dlq.redrive, None);
    }

    #[test]
    fn an_up_to_date_pipeline_needs_no_call() {
        let s = spec("t1");
        assert_eq!(plan_queues(&s, &up_to_date(&s)), []);
    }

    #[test]
    fn drifted_attributes_are_set_back_and_nothing_else() {
        let s = spec("t1");
        let mut observed = up_to_date(&s);
        let orders = observed.get_mut("t1-orders-queue.fifo").unwrap();
        orders.attributes.insert(attr::VISIBILITY_TIMEOUT.into(), "5".into());
        // Someone pointed the redrive at another queue.
        orders.attributes.insert(
            attr::REDRIVE_POLICY.into(),
            redrive_policy("arn:aws:sqs:us-east-1:000000000000:elsewhere.fifo", 5),
        );
        observed.get_mut("t1-status-queue-dlq.fifo").unwrap().attributes.remove(attr::MESSAGE_RETENTION_PERIOD);

        let actions = plan_queues(&s, &observed);
        assert_eq!(
            actions,
            [
                QueueAction::Repair {
                    name: "t1-orders-queue.fifo".into(),
                    url: "http://sqs/000000000000/t1-orders-queue.fifo".into(),
                    drift: vec![Drift {
                        attribute: attr::VISIBILITY_TIMEOUT,
                        live: Some("5".into()),
                        desired: "30".into()
                    }],
                    redrive: Some(Redrive {
                        dead_letter_queue: "t1-orders-queue-dlq.fifo".into(),
                        max_receive_count: 5
                    }),
                },
                QueueAction::Repair {
                    name: "t1-status-queue-dlq.fifo".into(),
                    url: "http://sqs/000000000000/t1-status-queue-dlq.fifo".into(),
                    drift: vec![Drift {
                        attribute: attr::MESSAGE_RETENTION_PERIOD,
                        live: None,
                        desired: "1209600".into()
                    }],
                    redrive: None,
                },
            ]
        );
        assert_eq!(
            describe(&actions[0]),
            "repaired drifted attributes of SQS queue t1-orders-queue.fifo: VisibilityTimeout 5 -> 30, \
             RedrivePolicy -> t1-orders-queue-dlq.fifo after 5 receives"
        );
    }

    #[test]
    fn a_redrive_count_written_as_a_string_still_matches() {
        let want = Redrive { dead_letter_queue: "d.fifo".into(), max_receive_count: 5 };
        let live = r#"{"deadLetterTargetArn":"arn:aws:sqs:eu-west-1:1:d.fifo","maxReceiveCount":"5"}"#.to_owned();
        assert!(redrive_matches(Some(&live), &want));
        let other = r#"{"deadLetterTargetArn":"arn:aws:sqs:eu-west-1:1:xd.fifo","maxReceiveCount":5}"#.to_owned();
        assert!(!redrive_matches(Some(&other), &want));
        assert!(!redrive_matches(None, &want));
    }
}
