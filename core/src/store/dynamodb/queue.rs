//! Messages queued behind a handover, in DynamoDB: the `queued` list on the session item and its byte
//! count, appended in one conditional write each.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};

use super::{attr, n, s, update_failure, value, DynamoDbStore, WriteFailure};
use crate::domain::{QueuedMessage, SessionState, QUEUE_LIMIT, QUEUE_LIMIT_BYTES};
use crate::store::{Enqueued, StoreError};

pub(super) const QUEUED: &str = "queued";
const QUEUED_BYTES: &str = "queued_bytes";

pub(super) async fn enqueue(
    store: &DynamoDbStore,
    session_id: &str,
    message: &QueuedMessage,
) -> Result<Enqueued, StoreError> {
    let now = store.clock.now();
    let bytes = message.text.len();
    let room = QUEUE_LIMIT_BYTES.saturating_sub(bytes);
    let result = store
        .client
        .update_item()
        .table_name(&store.table)
        .set_key(Some(HashMap::from([DynamoDbStore::key(session_id)])))
        .update_expression(
            "SET #q = list_append(if_not_exists(#q, :none), :message), #qb = if_not_exists(#qb, :zero) + :bytes",
        )
        // Only behind a live claim, and within both limits.
        .condition_expression(
            "#st = :handing_over AND #exp > :now AND (attribute_not_exists(#q) OR size(#q) < :max) \
             AND (attribute_not_exists(#qb) OR #qb <= :room)",
        )
        .expression_attribute_names("#q", QUEUED)
        .expression_attribute_names("#qb", QUEUED_BYTES)
        .expression_attribute_names("#st", attr::STATE)
        .expression_attribute_names("#exp", attr::EXPIRES_AT)
        .expression_attribute_values(":none", AttributeValue::L(Vec::new()))
        .expression_attribute_values(":message", value(&[message])?)
        .expression_attribute_values(":zero", n(0))
        .expression_attribute_values(":bytes", n(bytes as i64))
        .expression_attribute_values(":handing_over", s(SessionState::HandingOver.as_str()))
        .expression_attribute_values(":now", n(now))
        .expression_attribute_values(":max", n(QUEUE_LIMIT as i64))
        .expression_attribute_values(":room", n(room as i64))
        .return_values(ReturnValue::UpdatedNew)
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await;
    match result {
        Ok(output) => {
            let position = match output.attributes().and_then(|a| a.get(QUEUED)) {
                Some(AttributeValue::L(queued)) => queued.len(),
                _ => 0,
            };
            Ok(Enqueued::Queued { position })
        }
        // A missing item comes back as no item: nothing to queue behind.
        Err(err) => Ok(Enqueued::refused(
            store.refused_by(session_id, update_failure(err)).await?,
            now,
        )),
    }
}

pub(super) async fn clear(store: &DynamoDbStore, session_id: &str) -> Result<(), StoreError> {
    let result = store
        .client
        .update_item()
        .table_name(&store.table)
        .set_key(Some(HashMap::from([DynamoDbStore::key(session_id)])))
        .update_expression("REMOVE #q, #qb")
        // Never creates an item that is not there.
        .condition_expression("attribute_exists(#pk)")
        .expression_attribute_names("#q", QUEUED)
        .expression_attribute_names("#qb", QUEUED_BYTES)
        .expression_attribute_names("#pk", attr::PK)
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(err) => match update_failure(err) {
            WriteFailure::ConditionFailed(_) => Ok(()),
            WriteFailure::Other(err) => Err(err),
        },
    }
}
