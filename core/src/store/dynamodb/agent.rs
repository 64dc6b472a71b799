//! The agent's side of a session in DynamoDB: the amendment that writes its attributes on the session
//! item, and the items that link MSC's conversations to sessions (`msc-conversation#<guid>`).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};

use super::{
    attr, n, optional_session, put_failure, s, unavailable, update_failure, value, DynamoDbStore,
    Item, WriteFailure,
};
use crate::domain::{apply, HandoverChange, SessionState};
use crate::store::{AgentStore, Amended, Linked, StoreError, AMEND_ATTEMPTS, MSC_LINK_SECS};

/// Attributes beside the session's own (see `domain::AgentSide` for those).
mod name {
    pub const VERSION: &str = "version";
    pub const AMENDED_BY: &str = "amended_by";
    pub const SESSION: &str = "session";
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
                .expression_attribute_values(":ver", value(&session.agent.version)?)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                );
            let mut sets = Vec::new();
            let agent_side = serde_dynamo::to_item::<_, Item>(&next.agent)
                .map_err(|err| StoreError::Unavailable(err.to_string()))?;
            let written = [
                (attr::STATE.to_owned(), s(next.state.as_str())),
                (attr::EXPIRES_AT.to_owned(), n(next.expires_at)),
                (attr::UPDATED_AT.to_owned(), n(next.updated_at)),
                (attr::HISTORY.to_owned(), value(&next.history)?),
                (name::AMENDED_BY.to_owned(), s(&written_by)),
            ]
            .into_iter()
            .chain(agent_side);
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
