//! The drainer: what the outbound queue holds, delivered to MSC at its pace (every post goes through
//! [`crate::msc::PacedMsc`]). A delivered message is deleted from the queue and the page told; one
//! MSC refuses for good (a 4xx) is recorded in the session and the metrics and not tried again; one
//! that failed for now (MSC busy, failing or silent) comes round again later, after a backoff, and
//! the messages behind it with it, so nothing overtakes it within its conversation.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};

use crate::channel::ChannelPush;
use crate::clock::{Clock, SystemClock};
use crate::domain::HandoverChange;
use crate::files::Files;
use crate::metrics;
use crate::msc::{MscError, MscMessages, OutgoingFile};
use crate::outbound::{Held, Outbound};
use crate::store::{Amended, SessionStore};
use crate::telemetry::ErrorChain;

/// What the drainer delivers with.
pub struct DrainDeps {
    /// Paced: see [`crate::msc::PacedMsc`].
    pub msc: Arc<dyn MscMessages>,
    pub store: Arc<dyn SessionStore>,
    pub files: Files,
    pub channel: Arc<dyn ChannelPush>,
    pub outbound: Arc<dyn Outbound>,
    /// The longest one delivery can take (its wait for a slot and MSC's answer): a batch stops
    /// before the invocation's deadline comes closer than this.
    pub per_message_ms: i64,
}

/// What became of one held message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// MSC accepted it.
    Delivered,
    /// MSC refused it for good, with this status: recorded, not tried again.
    Refused(u16),
    /// Not now: it comes round again.
    Again,
}

/// Delivers one held message.
pub async fn deliver(deps: &DrainDeps, held: &Held) -> Delivery {
    let mut message = held.message.clone();
    if let Some(upload) = &held.upload {
        match deps
            .files
            .store
            .get(&upload.key, deps.files.rules.max_bytes)
            .await
        {
            Ok(Some(stored)) => message.attachments.push(OutgoingFile {
                name: upload.name.clone(),
                bytes: stored.bytes,
            }),
            // Deleted once MSC had it (this is a repeat, which MSC drops by its id), or gone with
            // the bucket's lifecycle: the text goes, which names the file.
            Ok(None) => tracing::warn!("the upload of a held message is gone; sending its text"),
            Err(err) => {
                tracing::warn!(error = %err, "the upload of a held message could not be read");
                return Delivery::Again;
            }
        }
    }
    match deps.msc.post(&message).await {
        Ok(()) => {
            metrics::count("MessagesRelayed");
            let waited = SystemClock.now_millis().saturating_sub(held.held_at);
            metrics::milliseconds("TimeToMsc", waited.max(0) as f64);
            if let Some(upload) = &held.upload {
                // MSC has the file now: the service keeps no copy of what the end user sent.
                metrics::count_outcome("FilesCarried", "From", "end_user");
                if let Err(err) = deps.files.store.delete(&upload.key).await {
                    tracing::warn!(error = %err, "a relayed upload was not deleted; the bucket's lifecycle will");
                }
            }
            tell_page(deps, held, None).await;
            Delivery::Delivered
        }
        Err(err) if err.is_transient() => {
            tracing::info!(error = %ErrorChain(&err), "MSC did not take the message now; it comes round again");
            metrics::count("DeliveriesRetried");
            Delivery::Again
        }
        Err(err) => {
            let status = match err {
                MscError::Status(status) => status,
                _ => 0,
            };
            tracing::warn!(
                status,
                "MSC refused the message for good; recorded, not tried again"
            );
            metrics::count_outcome("MessagesRefusedByMsc", "Status", &status.to_string());
            if let Some(upload) = &held.upload {
                let _ = deps.files.store.delete(&upload.key).await;
            }
            tell_page(deps, held, Some(status)).await;
            Delivery::Refused(status)
        }
    }
}

/// Records the delivery (or MSC's refusal) of the end user's message in the session and pushes it to
/// the page. A session that ended meanwhile, or was told already, is left as it is.
async fn tell_page(deps: &DrainDeps, held: &Held, refused: Option<u16>) {
    if !held.from_end_user() {
        return;
    }
    let session_id = &held.message.conversation_id;
    let change = HandoverChange::Relayed {
        message_id: held.message.message_id.clone(),
        refused,
    };
    match deps.store.amend_handover(session_id, &change).await {
        Ok(Amended::Applied(session)) => {
            if let Some(receipt) = session.agent.outbox.last() {
                deps.channel.push(session_id, receipt).await;
            }
        }
        Ok(Amended::Unchanged(_) | Amended::NotHandedOver(_)) => {}
        Err(err) => {
            tracing::warn!(error = %err, "the delivery was not recorded; the page is not told")
        }
    }
}

/// How long a message waits before it comes round again after its `receives`th failed delivery:
/// doubling from 1 s, at most a minute (so an MSC that is down for an hour costs about 60 tries per
/// message before the queue's redrive sets it aside).
pub fn backoff_secs(receives: u32) -> u32 {
    1u32.checked_shl(receives.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(60)
}

/// One delivery, in its span and with its own metrics line (as one invocation of the other functions
/// writes one), naming its session.
async fn deliver_counted(deps: &DrainDeps, held: &Held) -> Delivery {
    use tracing::Instrument;
    let session_id = &held.message.conversation_id;
    let span = tracing::info_span!("deliver", session_id = %session_id);
    let work = async {
        metrics::session(session_id);
        deliver(deps, held).await
    };
    metrics::per_event(MSC_OUTBOUND_FUNCTION, work.instrument(span)).await
}

/// The drainer's invocation: SQS's batch, delivered in order. The first message that must come round
/// again gives back every later one with it (a later message of its conversation must not overtake it;
/// the others come back at once). Only the given-back messages are reported as failed
/// (`ReportBatchItemFailures`): the rest are deleted by Lambda.
pub async fn on_sqs_batch(deps: &DrainDeps, event: SqsEvent, deadline_ms: i64) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let mut giving_back = false;
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let receipt = record.receipt_handle.clone().unwrap_or_default();
        let out_of_time =
            SystemClock.now_millis().saturating_add(deps.per_message_ms) > deadline_ms;
        let delivery = if giving_back || out_of_time {
            None
        } else {
            match serde_json::from_str::<Held>(record.body.as_deref().unwrap_or_default()) {
                Ok(held) => Some(deliver_counted(deps, &held).await),
                Err(err) => {
                    // Not ours, or written by a version that no longer reads: the redrive sets it aside.
                    tracing::error!(error = %err, "a held message could not be read");
                    metrics::count("HeldMessagesUnreadable");
                    Some(Delivery::Again)
                }
            }
        };
        let pause = match delivery {
            Some(Delivery::Delivered | Delivery::Refused(_)) => continue,
            Some(Delivery::Again) => {
                giving_back = true;
                let receives = record
                    .attributes
                    .get("ApproximateReceiveCount")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1);
                backoff_secs(receives)
            }
            None => 0,
        };
        if let Err(err) = deps.outbound.retry_later(&receipt, pause).await {
            tracing::warn!(error = %err, "a given-back message comes round after the visibility timeout");
        }
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = id;
        response.batch_item_failures.push(failure);
    }
    response
}

/// The msc-outbound function's name, in its metrics.
pub const MSC_OUTBOUND_FUNCTION: &str = "msc-outbound";

/// One invocation of msc-outbound (Lambda's SQS poller hands it a batch): [`on_sqs_batch`] in the
/// invocation's span (each delivery writes its own metrics line).
pub async fn on_event(
    deps: &DrainDeps,
    request_id: &str,
    event: SqsEvent,
    deadline_ms: i64,
) -> SqsBatchResponse {
    use tracing::Instrument;
    let span =
        tracing::info_span!("drain", request_id = %request_id, messages = event.records.len());
    on_sqs_batch(deps, event, deadline_ms)
        .instrument(span)
        .await
}

/// Lambda's SQS poller and msc-outbound, once, where no Lambda runs them (the local runner with a
/// queue, the tests): a batch received, delivered, and what was not reported failed deleted. How many
/// messages the batch held (0: none was visible).
pub async fn poll_sqs_once(
    deps: &DrainDeps,
    queue: &crate::outbound::SqsOutbound,
    visibility: Option<i32>,
) -> Result<usize, crate::outbound::OutboundError> {
    let event = queue.receive(visibility).await?;
    let records: Vec<(String, String)> = event
        .records
        .iter()
        .map(|r| {
            (
                r.message_id.clone().unwrap_or_default(),
                r.receipt_handle.clone().unwrap_or_default(),
            )
        })
        .collect();
    if records.is_empty() {
        return Ok(0);
    }
    let deadline = SystemClock.now_millis().saturating_add(60_000);
    let response = on_sqs_batch(deps, event, deadline).await;
    let delivered: Vec<String> = records
        .iter()
        .filter(|(id, _)| {
            response
                .batch_item_failures
                .iter()
                .all(|f| &f.item_identifier != id)
        })
        .map(|(_, receipt)| receipt.clone())
        .collect();
    queue.delete(&delivered).await?;
    Ok(records.len())
}

/// How many deliveries the local drain makes at once: as many as Lambda's SQS poller runs
/// msc-outbound (the event source's MaximumConcurrency), so a handover meets the same line.
const LOCAL_DRAINERS: usize = 2;

/// The local runner's drain: as SQS FIFO does, one conversation's messages in the order held, each
/// tried until it is delivered or refused (with the same backoff as deployed), while other
/// conversations' go on, at most [`LOCAL_DRAINERS`] deliveries at once; a conversation's worker ends
/// once it has nothing left.
pub async fn drain_local(
    deps: Arc<DrainDeps>,
    mut held: tokio::sync::mpsc::UnboundedReceiver<Held>,
) {
    type Workers = std::collections::HashMap<String, tokio::sync::mpsc::UnboundedSender<Held>>;
    let workers: Arc<std::sync::Mutex<Workers>> = Arc::default();
    let drainers = Arc::new(tokio::sync::Semaphore::new(LOCAL_DRAINERS));
    while let Some(message) = held.recv().await {
        let group = message.message.conversation_id.clone();
        let mut running = workers.lock().unwrap_or_else(|p| p.into_inner());
        // A worker that is still there takes it (it checks for more under this lock before it ends).
        let message = match running.get(&group) {
            Some(worker) => match worker.send(message) {
                Ok(()) => continue,
                Err(returned) => returned.0,
            },
            None => message,
        };
        let (sender, mut queue) = tokio::sync::mpsc::unbounded_channel();
        let _ = sender.send(message);
        running.insert(group.clone(), sender);
        let (deps, workers, drainers) = (deps.clone(), workers.clone(), drainers.clone());
        tokio::spawn(async move {
            loop {
                let next = {
                    let mut running = workers.lock().unwrap_or_else(|p| p.into_inner());
                    match queue.try_recv() {
                        Ok(next) => next,
                        Err(_) => {
                            running.remove(&group);
                            return;
                        }
                    }
                };
                let mut tries = 0;
                loop {
                    // A drainer's place is taken for a delivery, not for the backoff after it.
                    let Ok(drainer) = drainers.acquire().await else {
                        return;
                    };
                    let delivery = deliver_counted(&deps, &next).await;
                    drop(drainer);
                    if delivery != Delivery::Again {
                        break;
                    }
                    tries += 1;
                    let pause = backoff_secs(tries);
                    tokio::time::sleep(std::time::Duration::from_secs(u64::from(pause))).await;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_minute() {
        let pauses: Vec<u32> = (0..10).map(backoff_secs).collect();
        assert_eq!(pauses, [1, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff_secs(u32::MAX), 60);
    }
}
