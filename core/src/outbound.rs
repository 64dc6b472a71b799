//! The outbound path to MSC: every end user's message (and every message that waited behind a
//! handover, and the service's notes for the agent) is held in a queue and delivered by the drainer
//! (`flow::outbound`) at MSC's pace, in order within its conversation. The port has an SQS FIFO
//! adapter (deployed: one message group per conversation, deduplicated by the message's id) and an
//! in-process one (the local runner).

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::msc::OutgoingMessage;

/// A message for MSC, held until it is delivered.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Held {
    pub message: OutgoingMessage,
    /// The end user's file that goes with it, checked already: read from the file store when the
    /// message is sent (a queued message carries at most 256 KB; the file up to 4 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<HeldUpload>,
    /// When it was held (epoch milliseconds): what its time to reach MSC is counted from.
    pub held_at: i64,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("message", &self.message)
            .field("upload", &self.upload.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldUpload {
    pub key: String,
    pub name: String,
}

impl Held {
    /// Held now (real time, whatever clock the sessions run on: it measures the way to MSC).
    pub fn now(message: OutgoingMessage, upload: Option<HeldUpload>) -> Self {
        use crate::clock::Clock;
        Self {
            message,
            upload,
            held_at: crate::clock::SystemClock.now_millis(),
        }
    }

    /// Whether the end user (rather than the service) wrote it: its delivery is told to the page.
    pub fn from_end_user(&self) -> bool {
        !self.message.is_private
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("the outbound queue did not take the message: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait Outbound: Send + Sync {
    /// Holds `messages` durably, in this order within their conversation. A message held again under
    /// the same id (a retried turn) is held once. All or nothing as far as the caller knows: on an
    /// error, holding them all again is safe.
    async fn hold(&self, messages: &[Held]) -> Result<(), OutboundError>;

    /// A message given back after a failed delivery comes round again after `secs`, not after the
    /// queue's whole visibility timeout. `receipt` is what the queue handed it out with.
    async fn retry_later(&self, receipt: &str, secs: u32) -> Result<(), OutboundError>;
}

/// SQS's deduplication id (at most 128 characters): the message's id digested, as MSC's ids
/// (`<session>-message-<key>`) can be longer.
pub fn deduplication_id(message_id: &str) -> String {
    hex::encode(sha2::Sha256::digest(message_id.as_bytes()))
}

/// An SQS FIFO queue: the message group is the conversation, so one conversation's messages go in
/// order and different conversations' do not wait for each other; SQS drops a message sent again
/// under the same deduplication id within five minutes.
pub struct SqsOutbound {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsOutbound {
    pub fn new(sdk: &aws_config::SdkConfig, queue_url: impl Into<String>) -> Self {
        Self {
            client: aws_sdk_sqs::Client::new(sdk),
            queue_url: queue_url.into(),
        }
    }
}

impl SqsOutbound {
    /// What Lambda's SQS poller does for the drainer, for the local runner and the tests: receives up
    /// to 10 messages (each invisible for `visibility` seconds, or the queue's own timeout), as the
    /// records of the SQS event Lambda would build.
    pub async fn receive(
        &self,
        visibility: Option<i32>,
    ) -> Result<aws_lambda_events::event::sqs::SqsEvent, OutboundError> {
        let received = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .set_visibility_timeout(visibility)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|err| {
                OutboundError::Unavailable(aws_sdk_sqs::error::DisplayErrorContext(err).to_string())
            })?;
        let records: Vec<serde_json::Value> = received
            .messages()
            .iter()
            .map(|m| {
                let attributes: serde_json::Map<String, serde_json::Value> = m
                    .attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| (k.as_str().to_owned(), serde_json::json!(v)))
                            .collect()
                    })
                    .unwrap_or_default();
                serde_json::json!({
                    "messageId": m.message_id(),
                    "receiptHandle": m.receipt_handle(),
                    "body": m.body(),
                    "attributes": attributes,
                    "messageAttributes": {},
                    "eventSource": "aws:sqs",
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({ "Records": records }))
            .map_err(|err| OutboundError::Unavailable(err.to_string()))
    }

    /// Deletes delivered messages (at most 10, one request), as Lambda's poller does for what the
    /// drainer did not report.
    pub async fn delete(&self, receipts: &[String]) -> Result<(), OutboundError> {
        use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
        if receipts.is_empty() {
            return Ok(());
        }
        let entries = receipts
            .iter()
            .enumerate()
            .map(|(index, receipt)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .receipt_handle(receipt)
                    .build()
                    .map_err(|err| OutboundError::Unavailable(err.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let deleted = self
            .client
            .delete_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|err| {
                OutboundError::Unavailable(aws_sdk_sqs::error::DisplayErrorContext(err).to_string())
            })?;
        match deleted.failed().first() {
            Some(failed) => Err(OutboundError::Unavailable(format!(
                "{} not deleted ({})",
                deleted.failed().len(),
                failed.code()
            ))),
            None => Ok(()),
        }
    }
}

/// SQS takes at most this many messages in one request.
const SQS_BATCH: usize = 10;

#[async_trait]
impl Outbound for SqsOutbound {
    async fn hold(&self, messages: &[Held]) -> Result<(), OutboundError> {
        use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
        // In order: a batch keeps its entries' order within a message group, and batches go one
        // after the other.
        for chunk in messages.chunks(SQS_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(index, held)| {
                    let body = serde_json::to_string(held)
                        .map_err(|err| OutboundError::Unavailable(err.to_string()))?;
                    SendMessageBatchRequestEntry::builder()
                        .id(index.to_string())
                        .message_body(body)
                        .message_group_id(&held.message.conversation_id)
                        .message_deduplication_id(deduplication_id(&held.message.message_id))
                        .build()
                        .map_err(|err| OutboundError::Unavailable(err.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let sent = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|err| {
                    OutboundError::Unavailable(
                        aws_sdk_sqs::error::DisplayErrorContext(err).to_string(),
                    )
                })?;
            if let Some(failed) = sent.failed().first() {
                return Err(OutboundError::Unavailable(format!(
                    "{} of {} refused ({})",
                    sent.failed().len(),
                    chunk.len(),
                    failed.code()
                )));
            }
        }
        Ok(())
    }

    async fn retry_later(&self, receipt: &str, secs: u32) -> Result<(), OutboundError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(i32::try_from(secs).unwrap_or(i32::MAX))
            .send()
            .await
            .map(|_| ())
            .map_err(|err| {
                OutboundError::Unavailable(aws_sdk_sqs::error::DisplayErrorContext(err).to_string())
            })
    }
}

/// The local runner's queue: in process, drained by the runner's task (`flow::outbound::drain_local`)
/// through the same delivery and pace. Drops a message held again under an id it held recently, as
/// SQS does.
pub struct LocalOutbound {
    sender: tokio::sync::mpsc::UnboundedSender<Held>,
    recent: Mutex<(HashSet<String>, VecDeque<String>)>,
}

/// How many ids the local queue remembers to drop repeats.
const LOCAL_RECENT_IDS: usize = 10_000;

impl LocalOutbound {
    pub fn new() -> (Self, tokio::sync::mpsc::UnboundedReceiver<Held>) {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        (
            Self {
                sender,
                recent: Mutex::default(),
            },
            receiver,
        )
    }
}

#[async_trait]
impl Outbound for LocalOutbound {
    async fn hold(&self, messages: &[Held]) -> Result<(), OutboundError> {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        for held in messages {
            let id = &held.message.message_id;
            if !recent.0.insert(id.clone()) {
                continue;
            }
            recent.1.push_back(id.clone());
            if recent.1.len() > LOCAL_RECENT_IDS {
                if let Some(oldest) = recent.1.pop_front() {
                    recent.0.remove(&oldest);
                }
            }
            self.sender
                .send(held.clone())
                .map_err(|_| OutboundError::Unavailable("the local drain has stopped".into()))?;
        }
        Ok(())
    }

    async fn retry_later(&self, _receipt: &str, _secs: u32) -> Result<(), OutboundError> {
        // The local drain retries in place.
        Ok(())
    }
}

/// What a function built without a queue holds with: nothing (a deployed function that needs the
/// queue does not start without `MSC_OUTBOUND_QUEUE_URL`).
pub struct NoOutbound;

#[async_trait]
impl Outbound for NoOutbound {
    async fn hold(&self, _: &[Held]) -> Result<(), OutboundError> {
        Err(OutboundError::Unavailable(
            "no outbound queue is configured (MSC_OUTBOUND_QUEUE_URL)".into(),
        ))
    }

    async fn retry_later(&self, _: &str, _: u32) -> Result<(), OutboundError> {
        Ok(())
    }
}
