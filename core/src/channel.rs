//! Delivery to the channel: every message of the outbox is also pushed to `CHANNEL_WEBHOOK_URL` when
//! one is set, signed so the channel can check where it came from and refuse replays.

use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::clock::Clock;
use crate::config::{ChannelWebhookSettings, Keys};
use crate::domain::{ConnectionId, OutboxMessage, Sender, WaitChoice};
use crate::telemetry::ErrorChain;

/// What a push can learn before its message is stored, looked up beside the write that stores it:
/// the pages' live connections, each with the cursor its page had read (nothing, for the webhook).
pub type Ahead = Vec<(ConnectionId, u64)>;

#[async_trait]
pub trait ChannelPush: Send + Sync {
    /// Pushes one message. Never fails the caller: a push that does not get through is logged, and
    /// the message stays in the outbox for the channel to fetch.
    async fn push(&self, session_id: &str, message: &OutboxMessage);

    /// Looks up what [`ChannelPush::push_ahead`] can use, while the message is being stored.
    async fn look_ahead(&self, _session_id: &str) -> Ahead {
        Vec::new()
    }

    /// [`ChannelPush::push`], with what was looked up ahead.
    async fn push_ahead(&self, session_id: &str, message: &OutboxMessage, _ahead: Ahead) {
        self.push(session_id, message).await;
    }
}

/// No `CHANNEL_WEBHOOK_URL`: the channel polls the outbox.
pub struct NoChannelWebhook;

#[async_trait]
impl ChannelPush for NoChannelWebhook {
    async fn push(&self, _session_id: &str, _message: &OutboxMessage) {}
}

/// Attempts per message, and the pause before each retry: all inside the invocation.
const BACKOFF: [Duration; 2] = [Duration::from_millis(200), Duration::from_millis(600)];

pub struct ChannelWebhook {
    http: reqwest::Client,
    settings: ChannelWebhookSettings,
    clock: std::sync::Arc<dyn Clock>,
    files: std::sync::Arc<dyn crate::files::FileStore>,
}

impl ChannelWebhook {
    pub fn new(
        http: reqwest::Client,
        settings: ChannelWebhookSettings,
        clock: std::sync::Arc<dyn Clock>,
        files: std::sync::Arc<dyn crate::files::FileStore>,
    ) -> Self {
        Self {
            http,
            settings,
            clock,
            files,
        }
    }

    /// One attempt: `Some(true)` delivered, `Some(false)` refused for good (a 4xx other than 429),
    /// `None` worth another try.
    async fn attempt(&self, body: &[u8]) -> Option<bool> {
        let signature = signature_header(&self.settings.secret, self.clock.now(), body);
        let response = self
            .http
            .post(&self.settings.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("handover-signature", signature)
            .body(body.to_vec())
            .timeout(self.settings.timeout)
            .send()
            .await;
        let status = match response {
            Ok(response) => response.status(),
            Err(err) => {
                let err = err.without_url();
                tracing::warn!(error = %ErrorChain(&err), "the channel webhook could not be reached");
                return None;
            }
        };
        if status.is_success() {
            return Some(true);
        }
        tracing::warn!(
            status = status.as_u16(),
            "the channel webhook refused a message"
        );
        let final_refusal =
            status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS;
        final_refusal.then_some(false)
    }
}

#[async_trait]
impl ChannelPush for ChannelWebhook {
    async fn push(&self, session_id: &str, message: &OutboxMessage) {
        let files = crate::files::shown(self.files.as_ref(), message).await;
        let body = body(session_id, message, &files).to_string().into_bytes();
        let mut pauses = BACKOFF.iter();
        loop {
            match self.attempt(&body).await {
                Some(true) => {
                    tracing::info!(message_id = %message.id, "message pushed to the channel");
                    return;
                }
                Some(false) => break,
                None => {}
            }
            match pauses.next() {
                Some(pause) => tokio::time::sleep(*pause).await,
                None => break,
            }
        }
        tracing::error!(
            message_id = %message.id,
            "message not pushed to the channel; it stays in the outbox"
        );
        crate::metrics::count("ChannelPushesFailed");
    }
}

/// What the channel receives: `files`, the message's files with links made for this delivery.
pub fn body(session_id: &str, message: &OutboxMessage, files: &[crate::files::ShownFile]) -> Value {
    let mut body = json!({
        "sessionId": session_id,
        "id": message.id,
        "cursor": message.cursor,
        "from": message.from.as_str(),
        "text": message.text,
        "sentAt": crate::clock::rfc3339(message.sent_at),
    });
    if !files.is_empty() {
        body["files"] = json!(files);
    }
    match &message.from {
        Sender::Agent {
            agent_name: Some(name),
        } => body["agentName"] = json!(name),
        Sender::Agent { agent_name: None } => {}
        Sender::System { ended } => {
            body["event"] = json!("handover_ended");
            body["reason"] = json!(ended.as_str());
        }
        Sender::Joined { agent_name } => {
            body["event"] = json!("agent_joined");
            if let Some(name) = agent_name {
                body["agentName"] = json!(name);
            }
        }
        Sender::NobodyYet {
            round,
            agents_offline,
            opens_at,
        } => {
            body["event"] = json!("no_agent_yet");
            body["round"] = json!(round);
            if *agents_offline {
                body["agentsOffline"] = json!(true);
            }
            // What the end user may answer: `POST /v1/messages` with `choice` set to an `id`.
            body["choices"] = WaitChoice::ALL
                .iter()
                .map(|choice| json!({"id": choice.as_str(), "label": choice.label()}))
                .collect();
            if let Some(opens_at) = opens_at {
                body["opensAt"] = json!(crate::clock::rfc3339(*opens_at));
            }
        }
        Sender::Relayed { message, refused } => {
            body["messageId"] = json!(message);
            match refused {
                None => body["event"] = json!("delivered"),
                Some(status) => {
                    body["event"] = json!("not_delivered");
                    body["status"] = json!(status);
                }
            }
        }
    }
    body
}

/// The signature header: one `v1` per secret (two while `CHANNEL_WEBHOOK_SECRET` is rotated), so the
/// channel accepts the push with either (as Stripe's and Slack's webhooks do).
pub fn signature_header(secrets: &Keys, timestamp: i64, body: &[u8]) -> String {
    let mut header = signature(secrets.current.as_bytes(), timestamp, body);
    if let Some(next) = &secrets.next {
        let v1 = signature(next.as_bytes(), timestamp, body);
        if let Some((_, next_v1)) = v1.split_once(",v1=") {
            header.push_str(",v1=");
            header.push_str(next_v1);
        }
    }
    header
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`: the channel recomputes it with the shared
/// secret, and refuses an old `t` (a replay).
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length: this never returns early.
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn while_the_secret_is_rotated_the_header_signs_with_both() {
        let one = Keys {
            current: "Jefe".into(),
            next: None,
        };
        assert_eq!(
            signature_header(&one, 1, b"what do ya want for nothing?"),
            signature(b"Jefe", 1, b"what do ya want for nothing?")
        );
        let both = Keys {
            current: "Jefe".into(),
            next: Some("Next".into()),
        };
        let header = signature_header(&both, 1, b"body");
        let next_v1 = signature(b"Next", 1, b"body");
        assert!(
            header.starts_with(&signature(b"Jefe", 1, b"body")),
            "{header}"
        );
        assert!(
            header.ends_with(next_v1.split_once(",v1=").unwrap().1),
            "{header}"
        );
        assert_eq!(header.matches("v1=").count(), 2);
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Python: hmac.new(b"Jefe", b"1.what do ya want for nothing?", sha256).hexdigest()
        assert_eq!(
            signature(b"Jefe", 1, b"what do ya want for nothing?"),
            "t=1,v1=a9049465ce89cfb8e9aac62333abda66f80e3403f51f57f6bae3c3a4485eca38"
        );
        assert_ne!(
            signature(b"Jefe", 1, b"what do ya want for nothing?"),
            signature(b"Jefe", 2, b"what do ya want for nothing?")
        );
    }
}
