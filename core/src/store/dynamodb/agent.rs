//! The agent's side of a session in DynamoDB: its attributes on the session item, the amendment that
//! writes them, and the items that link MSC's conversations to sessions (`msc-conversation#<guid>`).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};

use super::{
    attr, n, optional_session, put_failure, s, unavailable, update_failure, DynamoDbStore, Item,
    WriteFailure,
};
use crate::domain::{apply, AgentSide, HandoverChange, OutboxMessage, SessionState};
use crate::store::{AgentStore, Amended, Linked, StoreError, AMEND_ATTEMPTS, MSC_LINK_SECS};

pub(super) mod name {
    pub const MSC_CONVERSATION: &str = "msc_conversation";
    pub const LINKED_AT: &str = "msc_linked_at";
    pub const AGENT_NAME: &str = "agent_name";
    pub const AGENT_JOINED_AT: &str = "agent_joined_at";
    pub const OUTBOX: &str = "outbox";
    pub const LAST_CURSOR: &str = "last_cursor";
    pub const END_REASON: &str = "end_reason";
    pub const VERSION: &str = "version";
    pub const REPLIES: &str = "agent_replies";
    pub const DELIVERED: &str = "delivered_replies";
    pub const AMENDED_BY: &str = "amended_by";
    pub const SESSION: &str = "session";
    // Fields of an outbox entry.
    pub const CURSOR: &str = "cursor";
    pub const ID: &str = "id";
    pub const FROM: &str = "from";
    pub const TEXT: &str = "text";
    pub const SENT_AT: &str = "sent_at";
    pub const ENDED: &str = "ended";
}

/// The attributes an agent side writes; none while it is empty, so sessions that never reach an
/// agent stay as small as before.
pub(super) fn attributes(side: &AgentSide) -> Vec<(&'static str, AttributeValue)> {
    let mut attributes = Vec::new();
    let mut optional = |name, value: Option<AttributeValue>| {
        if let Some(value) = value {
            attributes.push((name, value));
        }
    };
    optional(
        name::MSC_CONVERSATION,
        side.msc_conversation.as_deref().map(s),
    );
    optional(name::LINKED_AT, side.msc_linked_at.map(n));
    optional(name::AGENT_NAME, side.agent_name.as_deref().map(s));
    optional(name::AGENT_JOINED_AT, side.agent_joined_at.map(n));
    optional(name::END_REASON, side.end_reason.map(|r| s(r.as_str())));
    if side.version > 0 {
        attributes.push((name::OUTBOX, outbox_to_attr(&side.outbox)));
        attributes.push((name::LAST_CURSOR, unsigned(side.last_cursor)));
        attributes.push((name::VERSION, unsigned(side.version)));
        attributes.push((name::REPLIES, unsigned(side.replies)));
    }
    if !side.delivered.is_empty() {
        let bytes: Vec<u8> = side
            .delivered
            .iter()
            .flat_map(|d| d.to_be_bytes())
            .collect();
        attributes.push((name::DELIVERED, AttributeValue::B(Blob::new(bytes))));
    }
    attributes
}

/// The delivered replies' digests, stored as one binary attribute of 8 bytes each (a list of numbers
/// would take three times the room).
fn digests_from_bytes(bytes: &[u8]) -> Result<Vec<u64>, String> {
    if bytes.len() % 8 != 0 {
        return Err(format!("{} is not a list of digests", name::DELIVERED));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|chunk| {
            let mut digest = [0u8; 8];
            digest.copy_from_slice(chunk);
            u64::from_be_bytes(digest)
        })
        .collect())
}

fn unsigned(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn outbox_to_attr(outbox: &[OutboxMessage]) -> AttributeValue {
    AttributeValue::L(
        outbox
            .iter()
            .map(|message| {
                let mut entry = Item::from([
                    (name::CURSOR.to_owned(), unsigned(message.cursor)),
                    (name::ID.to_owned(), s(&message.id)),
                    (name::FROM.to_owned(), s(message.from.as_str())),
                    (name::TEXT.to_owned(), s(&message.text)),
                    (name::SENT_AT.to_owned(), n(message.sent_at)),
                ]);
                if let Some(agent_name) = &message.agent_name {
                    entry.insert(name::AGENT_NAME.to_owned(), s(agent_name));
                }
                if let Some(reason) = message.ended {
                    entry.insert(name::ENDED.to_owned(), s(reason.as_str()));
                }
                AttributeValue::M(entry)
            })
            .collect(),
    )
}

/// Reads an agent side back; `Err` names what is wrong.
pub(super) fn read(item: &Item) -> Result<AgentSide, String> {
    let string = |map: &Item, name: &str| match map.get(name) {
        None => Ok(None),
        Some(AttributeValue::S(value)) => Ok(Some(value.clone())),
        Some(_) => Err(format!("{name} is not a string")),
    };
    let number = |map: &Item, name: &str| match map.get(name) {
        None => Ok(None),
        Some(AttributeValue::N(value)) => value
            .parse::<i64>()
            .map(Some)
            .map_err(|_| format!("{name} is not a whole number")),
        Some(_) => Err(format!("{name} is not a number")),
    };
    let counter = |map: &Item, name: &str| -> Result<u64, String> {
        number(map, name)?.map_or(Ok(0), |value| {
            u64::try_from(value).map_err(|_| format!("{name} is negative"))
        })
    };
    let outbox = match item.get(name::OUTBOX) {
        None => Vec::new(),
        Some(AttributeValue::L(entries)) => entries
            .iter()
            .map(|entry| {
                let AttributeValue::M(map) = entry else {
                    return Err("an outbox entry is not a map".to_owned());
                };
                let required = |name: &str| {
                    string(map, name)?.ok_or_else(|| format!("an outbox entry lacks {name}"))
                };
                Ok(OutboxMessage {
                    cursor: counter(map, name::CURSOR)?,
                    id: required(name::ID)?,
                    from: required(name::FROM)?.parse()?,
                    agent_name: string(map, name::AGENT_NAME)?,
                    text: required(name::TEXT)?,
                    sent_at: number(map, name::SENT_AT)?.unwrap_or_default(),
                    ended: string(map, name::ENDED)?.map(|r| r.parse()).transpose()?,
                })
            })
            .collect::<Result<_, String>>()?,
        Some(_) => return Err("outbox is not a list".to_owned()),
    };
    Ok(AgentSide {
        msc_conversation: string(item, name::MSC_CONVERSATION)?,
        msc_linked_at: number(item, name::LINKED_AT)?,
        agent_name: string(item, name::AGENT_NAME)?,
        agent_joined_at: number(item, name::AGENT_JOINED_AT)?,
        outbox,
        last_cursor: counter(item, name::LAST_CURSOR)?,
        end_reason: string(item, name::END_REASON)?
            .map(|r| r.parse())
            .transpose()?,
        version: counter(item, name::VERSION)?,
        replies: counter(item, name::REPLIES)?,
        delivered: match item.get(name::DELIVERED) {
            None => Vec::new(),
            Some(AttributeValue::B(blob)) => digests_from_bytes(blob.as_ref())?,
            Some(_) => return Err(format!("{} is not binary", name::DELIVERED)),
        },
    })
}

fn link_key(guid: &str) -> (String, AttributeValue) {
    (attr::PK.to_owned(), s(&format!("msc-conversation#{guid}")))
}

#[async_trait]
impl AgentStore for DynamoDbStore {
    async fn amend_handover(
        &self,
        session_id: &str,
        change: &HandoverChange,
    ) -> Result<Amended, StoreError> {
        use crate::store::SessionReader;
        let mut found = self.get_stored(session_id).await?;
        for _ in 0..AMEND_ATTEMPTS {
            let now = self.clock.now();
            let session = match found.take() {
                Some(session) if change.applies_to(&session, now) => session,
                other => return Ok(Amended::NotHandedOver(other)),
            };
            // A live lock, or for the end by inactivity a lapsed one; and only the version this
            // change was computed from.
            let expiry = if session.is_live(now) {
                "#exp > :now"
            } else {
                "#exp <= :now"
            };
            let Some(next) = apply(&session, change, now, self.policy.lock_expiry(now)) else {
                return Ok(Amended::Unchanged(session));
            };
            // Written with the amendment: finding it on a refusal means this very write landed and
            // the SDK retried it after its response was lost (under load, past the attempt timeout).
            let written_by = uuid::Uuid::new_v4().simple().to_string();
            let mut update = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(HashMap::from([Self::key(session_id)])))
                .condition_expression(format!(
                    "#st = :handed_over AND {expiry} AND (attribute_not_exists(#ver) OR #ver = :ver)"
                ))
                .expression_attribute_names("#st", attr::STATE)
                .expression_attribute_names("#exp", attr::EXPIRES_AT)
                .expression_attribute_names("#ver", name::VERSION)
                .expression_attribute_values(":handed_over", s(SessionState::HandedOver.as_str()))
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":ver", unsigned(session.agent.version))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                );
            let mut sets = Vec::new();
            let written = [
                (attr::STATE, s(next.state.as_str())),
                (attr::EXPIRES_AT, n(next.expires_at)),
                (attr::UPDATED_AT, n(next.updated_at)),
                (attr::HISTORY, super::history_to_attr(&next.history)),
                (name::AMENDED_BY, s(&written_by)),
            ]
            .into_iter()
            .chain(attributes(&next.agent));
            for (index, (attribute, value)) in written.enumerate() {
                sets.push(format!("#a{index} = :a{index}"));
                update = update
                    .expression_attribute_names(format!("#a{index}"), attribute)
                    .expression_attribute_values(format!(":a{index}"), value);
            }
            let result = update
                .update_expression(format!("SET {}", sets.join(", ")))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(Amended::Applied(next)),
                // Another change got there first (or the lock ended): start again from what it wrote.
                Err(err) => match self
                    .with_item(Self::key(session_id), update_failure(err))
                    .await?
                {
                    WriteFailure::ConditionFailed(old) => {
                        let ours = old.as_ref().and_then(|item| item.get(name::AMENDED_BY))
                            == Some(&s(&written_by));
                        if ours {
                            return Ok(Amended::Applied(next));
                        }
                        found = optional_session(old.as_ref())?;
                    }
                    WriteFailure::Other(err) => return Err(err),
                },
            }
        }
        Err(StoreError::Unavailable(format!(
            "session {session_id:?} changed under {AMEND_ATTEMPTS} attempts to amend it"
        )))
    }

    async fn link_msc_conversation(
        &self,
        guid: &str,
        session_id: &str,
    ) -> Result<Linked, StoreError> {
        let now = self.clock.now();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(HashMap::from([
                link_key(guid),
                (name::SESSION.to_owned(), s(session_id)),
                (
                    attr::EXPIRES_AT.to_owned(),
                    n(now.saturating_add(MSC_LINK_SECS)),
                ),
            ])))
            .condition_expression(
                "attribute_not_exists(#pk) OR #session = :session OR #exp <= :now",
            )
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#session", name::SESSION)
            .expression_attribute_names("#exp", attr::EXPIRES_AT)
            .expression_attribute_values(":session", s(session_id))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Linked::Linked),
            Err(err) => match put_failure(err) {
                WriteFailure::ConditionFailed(_) => Ok(Linked::TakenByAnother),
                WriteFailure::Other(err) => Err(err),
            },
        }
    }

    async fn find_msc_conversation(&self, guid: &str) -> Result<Option<String>, StoreError> {
        let now = self.clock.now();
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(HashMap::from([link_key(guid)])))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let Some(item) = output.item() else {
            return Ok(None);
        };
        let live = matches!(item.get(attr::EXPIRES_AT), Some(AttributeValue::N(at)) if at.parse::<i64>().is_ok_and(|at| at > now));
        Ok(match item.get(name::SESSION) {
            Some(AttributeValue::S(session_id)) if live => Some(session_id.clone()),
            _ => None,
        })
    }
}
