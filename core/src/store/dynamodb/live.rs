//! The pages' live connections in DynamoDB: one item per conversation, `live#<session id>`, with the
//! highest cursor announced (`announced`) and one attribute per connection (`c#<connection id>`: `u`
//! the time it is kept until, `s` the cursor its page had read). One item rather than one per connection, so that announcing a message and
//! learning where to push it is one write.

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};

use super::{attr, n, s, update_failure, DynamoDbStore, Item, WriteFailure};
use crate::domain::ConnectionId;
use crate::store::{LiveStore, Registered, StoreError, CONNECTION_SECS};

const ANNOUNCED: &str = "announced";
const CONNECTION_PREFIX: &str = "c#";

fn live_key(session_id: &str) -> (String, AttributeValue) {
    (attr::PK.to_owned(), s(&format!("live#{session_id}")))
}

fn connection_attribute(connection: &ConnectionId) -> String {
    format!("{CONNECTION_PREFIX}{connection}")
}

fn number(item: &Item, name: &str) -> Option<i64> {
    match item.get(name) {
        Some(AttributeValue::N(value)) => value.parse().ok(),
        _ => None,
    }
}

/// A connection's attribute: kept until, and seen.
fn connection_value(until: i64, seen: u64) -> AttributeValue {
    AttributeValue::M(
        [
            ("u".to_owned(), n(until)),
            ("s".to_owned(), AttributeValue::N(seen.to_string())),
        ]
        .into(),
    )
}

/// Every connection the item names: (id, kept until, seen).
fn connections(item: &Item) -> Vec<(ConnectionId, i64, u64)> {
    item.iter()
        .filter_map(|(name, value)| {
            let id = ConnectionId::parse(name.strip_prefix(CONNECTION_PREFIX)?)?;
            let AttributeValue::M(fields) = value else {
                return None;
            };
            let field = |name: &str| match fields.get(name) {
                Some(AttributeValue::N(number)) => number.parse::<i64>().ok(),
                _ => None,
            };
            let seen = u64::try_from(field("s")?).ok()?;
            Some((id, field("u")?, seen))
        })
        .collect()
}

/// The item's connections that have not expired, each with what its page had read, in id order.
fn unexpired(item: Option<&Item>, now: i64) -> Vec<(ConnectionId, u64)> {
    let mut live: Vec<(ConnectionId, u64)> = item
        .map(connections)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, until, _)| *until > now)
        .map(|(id, _, seen)| (id, seen))
        .collect();
    live.sort();
    live
}

impl DynamoDbStore {
    /// Drops the named connections' attributes (expired, evicted): one write, skipped when empty.
    async fn drop_connections(
        &self,
        session_id: &str,
        gone: &[ConnectionId],
    ) -> Result<(), StoreError> {
        if gone.is_empty() {
            return Ok(());
        }
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(live_key(session_id).0, live_key(session_id).1)
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", attr::PK);
        let mut names = Vec::new();
        for (index, connection) in gone.iter().enumerate() {
            names.push(format!("#c{index}"));
            update = update
                .expression_attribute_names(format!("#c{index}"), connection_attribute(connection));
        }
        match update
            .update_expression(format!("REMOVE {}", names.join(", ")))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) => match update_failure(err) {
                WriteFailure::ConditionFailed(_) => Ok(()),
                WriteFailure::Other(err) => Err(err),
            },
        }
    }
}

#[async_trait::async_trait]
impl LiveStore for DynamoDbStore {
    async fn register_connection(
        &self,
        session_id: &str,
        connection: &ConnectionId,
        seen: u64,
    ) -> Result<Registered, StoreError> {
        let now = self.clock.now();
        let (pk, key) = live_key(session_id);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(pk.clone(), key.clone())
            .update_expression("SET #c = :entry, #exp = :until")
            .condition_expression("attribute_not_exists(#ann) OR #ann <= :seen")
            .expression_attribute_names("#c", connection_attribute(connection))
            .expression_attribute_names("#exp", attr::EXPIRES_AT)
            .expression_attribute_names("#ann", ANNOUNCED)
            .expression_attribute_values(":entry", connection_value(now + CONNECTION_SECS, seen))
            .expression_attribute_values(":until", n(now + CONNECTION_SECS))
            .expression_attribute_values(":seen", AttributeValue::N(seen.to_string()))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => {
                let all = output.attributes().map(connections).unwrap_or_default();
                let (live, expired): (Vec<_>, Vec<_>) =
                    all.into_iter().partition(|(_, until, _)| *until > now);
                let evicted = crate::store::over_the_limit(
                    live.into_iter().map(|(id, until, _)| (id, until)).collect(),
                );
                let mut gone: Vec<ConnectionId> =
                    expired.into_iter().map(|(id, _, _)| id).collect();
                gone.extend(evicted.iter().cloned());
                self.drop_connections(session_id, &gone).await?;
                Ok(Registered::Registered { evicted })
            }
            Err(err) => match self.with_item((pk, key), update_failure(err)).await? {
                WriteFailure::ConditionFailed(old) => Ok(Registered::Behind {
                    announced: old
                        .as_ref()
                        .and_then(|item| number(item, ANNOUNCED))
                        .map_or(0, |announced| u64::try_from(announced).unwrap_or(0)),
                }),
                WriteFailure::Other(err) => Err(err),
            },
        }
    }

    async fn announce(
        &self,
        session_id: &str,
        cursor: u64,
    ) -> Result<Vec<ConnectionId>, StoreError> {
        let now = self.clock.now();
        let (pk, key) = live_key(session_id);
        // The item outlives every announcement by as long as a connection lives, so that a page
        // registering in the same moment still finds it.
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(pk.clone(), key.clone())
            .update_expression("SET #ann = :cursor, #exp = :keep")
            .condition_expression("attribute_not_exists(#ann) OR #ann < :cursor")
            .expression_attribute_names("#ann", ANNOUNCED)
            .expression_attribute_names("#exp", attr::EXPIRES_AT)
            .expression_attribute_values(":cursor", AttributeValue::N(cursor.to_string()))
            .expression_attribute_values(":keep", n(now + CONNECTION_SECS))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let item = match result {
            Ok(output) => output.attributes().cloned(),
            // A later message was announced first: it is this message's connections all the same.
            Err(err) => match self.with_item((pk, key), update_failure(err)).await? {
                WriteFailure::ConditionFailed(old) => old,
                WriteFailure::Other(err) => return Err(err),
            },
        };
        Ok(unexpired(item.as_ref(), now)
            .into_iter()
            .filter(|(_, seen)| *seen < cursor)
            .map(|(id, _)| id)
            .collect())
    }

    async fn connections(&self, session_id: &str) -> Result<Vec<(ConnectionId, u64)>, StoreError> {
        let (pk, key) = live_key(session_id);
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(pk, key)
            .send()
            .await
            .map_err(super::unavailable)?;
        Ok(unexpired(output.item(), self.clock.now()))
    }

    async fn remove_connection(
        &self,
        session_id: &str,
        connection: &ConnectionId,
    ) -> Result<(), StoreError> {
        self.drop_connections(session_id, std::slice::from_ref(connection))
            .await
    }
}
