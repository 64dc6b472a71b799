//! Conversational AI Cloud: the port the flow talks to, and its HTTP adapter.
//!
//! CAIC's raw `/ask` JSON is not public; [`parse_reply`] reads the normalised shape of CM.com's own
//! connector, for answers and events alike. A different raw shape is a change to that one function.

use async_trait::async_trait;
use serde_json::Value;

use crate::config::CaicSettings;
use crate::domain::{AgentStatus, OutputAdditions, SessionId};

/// What CAIC said: the texts to show, the session it runs under, and the additions that drive the flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaicReply {
    pub session_id: SessionId,
    pub answers: Vec<String>,
    pub additions: OutputAdditions,
}

#[derive(Debug, thiserror::Error)]
pub enum CaicError {
    #[error("CAIC did not answer in time")]
    Timeout,
    /// The error has its URL removed: CAIC's URL carries the API key.
    #[error("CAIC could not be reached")]
    Transport(#[source] reqwest::Error),
    #[error("CAIC answered HTTP {0}")]
    Status(u16),
    #[error("CAIC's answer could not be read: {0}")]
    Malformed(String),
}

#[async_trait]
pub trait Caic: Send + Sync {
    /// Asks the bot. `session_id` is `None` for a new conversation: CAIC then makes one.
    async fn ask(
        &self,
        session_id: Option<&str>,
        text: &str,
        culture: &str,
    ) -> Result<CaicReply, CaicError>;

    /// Triggers the `prechat` event with context variable `agentStatus`.
    async fn prechat_event(
        &self,
        session_id: &str,
        culture: &str,
        agent_status: AgentStatus,
    ) -> Result<CaicReply, CaicError>;
}

/// The event that starts the intake dialog (`[A-Za-z0-9_-]{1,256}` per CAIC's rules).
pub const PRECHAT_EVENT: &str = "prechat";

/// Reads a CAIC reply. `data` may be one output or a list of them; `livechat` and `prechat` hold when
/// any output says so, the string additions come from the first output that sets them.
pub fn parse_reply(body: &Value, asked_session: Option<&str>) -> Result<CaicReply, CaicError> {
    let Some(object) = body.as_object() else {
        return Err(CaicError::Malformed("not a JSON object".into()));
    };
    let session_id = object
        .get("metadata")
        .and_then(|m| m.get("sessionId"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .or(asked_session)
        .ok_or_else(|| CaicError::Malformed("no metadata.sessionId".into()))?;
    let session_id = SessionId::parse(session_id).map_err(|_| {
        CaicError::Malformed("metadata.sessionId is not a usable session id".into())
    })?;
    let outputs: Vec<&Value> = match object.get("data") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(single @ Value::Object(_)) => vec![single],
        Some(Value::Null) | None => Vec::new(),
        Some(_) => {
            return Err(CaicError::Malformed(
                "data is neither an object nor a list".into(),
            ))
        }
    };
    let mut answers = Vec::new();
    let mut additions = OutputAdditions::default();
    for output in outputs {
        if let Some(text) = output
            .get("answer")
            .and_then(Value::as_str)
            .filter(|t| !t.trim().is_empty())
        {
            answers.push(text.to_owned());
        }
        let found = output
            .get("outputAdditions")
            .or_else(|| output.get("metadata"))
            .map(OutputAdditions::parse)
            .unwrap_or_default();
        additions.livechat |= found.livechat;
        additions.prechat |= found.prechat;
        additions.skill = additions.skill.or(found.skill);
        additions.msc_webstore = additions.msc_webstore.or(found.msc_webstore);
        additions.msc_channel = additions.msc_channel.or(found.msc_channel);
    }
    Ok(CaicReply {
        session_id,
        answers,
        additions,
    })
}

pub struct CaicHttp {
    http: reqwest::Client,
    settings: CaicSettings,
}

impl CaicHttp {
    pub fn new(http: reqwest::Client, settings: CaicSettings) -> Self {
        Self { http, settings }
    }

    async fn get(
        &self,
        path: &str,
        query: &[(&str, &str)],
        session: Option<&str>,
    ) -> Result<CaicReply, CaicError> {
        let url = format!("{}/{}", self.settings.base_url, path);
        let keys = [
            ("customerKey", self.settings.customer_key.as_str()),
            ("projectKey", self.settings.project_key.as_str()),
            ("apiKey", self.settings.api_key.as_str()),
        ];
        let response = self
            .http
            .get(url)
            .query(&keys)
            .query(query)
            .header(reqwest::header::ACCEPT, "application/json, standard")
            .timeout(self.settings.timeout)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        if !status.is_success() {
            return Err(CaicError::Status(status.as_u16()));
        }
        let body: Value = response
            .json()
            .await
            .map_err(|e| CaicError::Malformed(e.without_url().to_string()))?;
        parse_reply(&body, session)
    }
}

/// reqwest's errors carry the URL, and CAIC's URL carries the API key: never let it reach a log.
fn transport_error(err: reqwest::Error) -> CaicError {
    if err.is_timeout() {
        CaicError::Timeout
    } else {
        CaicError::Transport(err.without_url())
    }
}

#[async_trait]
impl Caic for CaicHttp {
    async fn ask(
        &self,
        session_id: Option<&str>,
        text: &str,
        culture: &str,
    ) -> Result<CaicReply, CaicError> {
        let mut query = vec![("culture", culture), ("q", text)];
        if let Some(session) = session_id {
            query.push(("session", session));
        }
        self.get("ask", &query, session_id).await
    }

    async fn prechat_event(
        &self,
        session_id: &str,
        culture: &str,
        agent_status: AgentStatus,
    ) -> Result<CaicReply, CaicError> {
        let query = [
            ("culture", culture),
            ("session", session_id),
            ("agentStatus", agent_status.as_str()),
        ];
        self.get(&format!("event/{PRECHAT_EVENT}"), &query, Some(session_id))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_connector_shape() {
        let reply = parse_reply(
            &json!({"data": {"answer": "Let me connect you.", "type": "answer", "dialogOptions": [], "links": [],
                      "outputAdditions": {"livechat": "true", "skill": "billing", "mscWebstore": "NL-shop", "mscChannel": "WebChat"}},
                    "metadata": {"culture": "en", "interactionId": "i-1", "sessionId": "s-1"}}),
            None,
        )
        .unwrap();
        assert_eq!(reply.session_id.as_str(), "s-1");
        assert_eq!(reply.answers, vec!["Let me connect you.".to_owned()]);
        assert!(reply.additions.livechat);
        assert_eq!(reply.additions.skill.as_deref(), Some("billing"));
    }

    #[test]
    fn merges_a_list_of_outputs() {
        let reply = parse_reply(
            &json!({"data": [{"answer": "One"}, {"answer": "", "outputAdditions": {"prechat": ["true"]}},
                             {"answer": "Two", "outputAdditions": {"skill": "sales"}}],
                    "metadata": {}}),
            Some("asked"),
        )
        .unwrap();
        assert_eq!(reply.session_id.as_str(), "asked");
        assert_eq!(reply.answers, vec!["One".to_owned(), "Two".to_owned()]);
        assert!(reply.additions.prechat);
        assert_eq!(reply.additions.skill.as_deref(), Some("sales"));
    }

    #[test]
    fn a_reply_without_any_session_is_malformed() {
        assert!(matches!(
            parse_reply(&json!({"data": {"answer": "hi"}}), None),
            Err(CaicError::Malformed(_))
        ));
        assert!(matches!(
            parse_reply(&json!([1, 2]), Some("s")),
            Err(CaicError::Malformed(_))
        ));
    }
}
