//! Conversational AI Cloud: the port the flow talks to, and its HTTP adapter.
//!
//! CAIC's raw `/ask` JSON is not public; [`parse_reply`] reads the normalised shape of CM.com's own
//! connector, for answers and events alike. A different raw shape is a change to that one function.

use async_trait::async_trait;
use serde_json::Value;

use crate::config::CaicSettings;
use crate::domain::{AgentStatus, OutputAdditions, SessionId};

/// What CAIC said: the answers to show, the session it runs under, and the additions that drive the
/// flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaicReply {
    pub session_id: SessionId,
    pub answers: Vec<Answer>,
    pub additions: OutputAdditions,
}

/// One answer as the end user sees it: its text (as CAIC wrote it, HTML included), the dialog's options
/// (what the end user may pick, and what to send back when they do) and its links.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Answer {
    pub text: String,
    pub options: Vec<DialogOption>,
    pub links: Vec<Link>,
}

impl Answer {
    /// A text of the service's own, with nothing to pick.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            options: Vec::new(),
            links: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DialogOption {
    pub label: String,
    /// The message to send when the end user picks it.
    pub send: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Link {
    pub label: String,
    pub url: String,
}

/// At most this many options and links per answer, each label at most this long: CAIC's shapes are
/// not public, and whatever it sends reaches a page.
const CHOICES_LIMIT: usize = 20;
const LABEL_LIMIT_CHARS: usize = 200;
const URL_LIMIT_BYTES: usize = 2_048;

/// A non-blank text, trimmed and bounded.
fn bounded(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.chars().take(LABEL_LIMIT_CHARS).collect())
}

/// The first of `names` that holds a non-blank string.
fn field(object: &Value, names: &[&str]) -> Option<String> {
    names
        .iter()
        .filter_map(|name| object.get(*name).and_then(Value::as_str))
        .find_map(bounded)
}

/// A dialog option: a string, or an object with a label-like field and, maybe, what to send back.
fn dialog_option(option: &Value) -> Option<DialogOption> {
    let label = match option {
        Value::String(text) => bounded(text),
        _ => field(option, &["label", "text", "title", "name", "value"]),
    }?;
    let send =
        field(option, &["value", "payload", "send", "query", "text"]).unwrap_or(label.clone());
    Some(DialogOption { label, send })
}

/// A link: a URL string, or an object with a URL-like field and, maybe, a label. Only `http` and
/// `https` pass: a page renders these as links, and a `javascript:` one would run.
fn link(link: &Value) -> Option<Link> {
    let raw = match link {
        Value::String(url) => Some(url.trim().to_owned()),
        _ => ["url", "href", "link", "uri"]
            .iter()
            .find_map(|name| link.get(*name).and_then(Value::as_str))
            .map(|url| url.trim().to_owned()),
    }?;
    let url = url::Url::parse(&raw).ok().filter(|url| {
        matches!(url.scheme(), "http" | "https") && url.as_str().len() <= URL_LIMIT_BYTES
    })?;
    let label = field(link, &["label", "text", "title", "name"]).unwrap_or_else(|| url.to_string());
    Some(Link {
        label,
        url: url.into(),
    })
}

fn choices<T>(output: &Value, names: &[&str], read: impl Fn(&Value) -> Option<T>) -> Vec<T> {
    names
        .iter()
        .find_map(|name| output.get(*name).and_then(Value::as_array))
        .map(|items| items.iter().filter_map(&read).take(CHOICES_LIMIT).collect())
        .unwrap_or_default()
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
        let text = output
            .get("answer")
            .and_then(Value::as_str)
            .filter(|t| !t.trim().is_empty());
        let options = choices(output, &["dialogOptions", "options"], dialog_option);
        let links = choices(output, &["links"], link);
        if text.is_some() || !options.is_empty() || !links.is_empty() {
            answers.push(Answer {
                text: text.unwrap_or_default().to_owned(),
                options,
                links,
            });
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
        assert_eq!(reply.answers, vec![Answer::text("Let me connect you.")]);
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
        assert_eq!(
            reply.answers,
            vec![Answer::text("One"), Answer::text("Two")]
        );
        assert!(reply.additions.prechat);
        assert_eq!(reply.additions.skill.as_deref(), Some("sales"));
    }

    fn answer_of(output: Value) -> Answer {
        let reply = parse_reply(
            &json!({"data": output, "metadata": {"sessionId": "s"}}),
            None,
        )
        .unwrap();
        reply.answers.into_iter().next().expect("an answer")
    }

    #[test]
    fn dialog_options_are_read_from_strings_and_from_label_like_objects() {
        let option = |label: &str, send: &str| DialogOption {
            label: label.into(),
            send: send.into(),
        };
        let answer = answer_of(json!({"answer": "Talk to a colleague?",
            "dialogOptions": ["Yes", {"label": "No", "value": "no thanks"}, {"text": "Maybe"},
                              {"title": "Later", "payload": "later"}, {"name": " "}, 7, null]}));
        assert_eq!(answer.text, "Talk to a colleague?");
        assert_eq!(
            answer.options,
            [
                option("Yes", "Yes"),
                option("No", "no thanks"),
                option("Maybe", "Maybe"),
                option("Later", "later")
            ]
        );
        let under_options = answer_of(json!({"answer": "Pick", "options": [{"label": "A"}]}));
        assert_eq!(under_options.options, [option("A", "A")]);
        let many: Vec<String> = (0..50).map(|n| format!("option {n}")).collect();
        let bounded = answer_of(json!({"answer": "Pick", "dialogOptions": many}));
        assert_eq!(bounded.options.len(), CHOICES_LIMIT);
        let long = answer_of(json!({"answer": "Pick", "dialogOptions": ["x".repeat(1_000)]}));
        assert_eq!(long.options[0].label.chars().count(), LABEL_LIMIT_CHARS);
    }

    #[test]
    fn links_are_http_only_and_labelled() {
        let answer = answer_of(json!({"answer": "See",
            "links": ["https://shop.example/returns", {"url": "https://shop.example/faq", "text": "FAQ"},
                      {"href": "http://shop.example/a", "title": "A"}, {"url": "javascript:alert(1)"},
                      "not a url", {"label": "no url"}, {"uri": "ftp://shop.example/f"}]}));
        let links: Vec<(&str, &str)> = answer
            .links
            .iter()
            .map(|l| (l.label.as_str(), l.url.as_str()))
            .collect();
        assert_eq!(
            links,
            [
                (
                    "https://shop.example/returns",
                    "https://shop.example/returns"
                ),
                ("FAQ", "https://shop.example/faq"),
                ("A", "http://shop.example/a")
            ]
        );
    }

    #[test]
    fn an_output_with_only_options_is_an_answer_and_an_empty_one_is_not() {
        let reply = parse_reply(
            &json!({"data": [{"answer": "", "dialogOptions": ["Yes"]}, {"answer": " ", "links": []}],
                    "metadata": {"sessionId": "s"}}),
            None,
        )
        .unwrap();
        assert_eq!(reply.answers.len(), 1);
        assert_eq!(reply.answers[0].text, "");
        assert_eq!(reply.answers[0].options[0].label, "Yes");
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
