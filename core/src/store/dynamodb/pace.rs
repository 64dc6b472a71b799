//! The pace of MSC's API in DynamoDB: one item, `pace#msc`, whose `next_send` is the earliest time
//! (epoch milliseconds) the next request to MSC may go. Reserving is one conditional write while the
//! slot is free (the usual case at low load), and two when it is taken: the first is refused and says
//! where the slot stands, the second takes it by an increment, which concurrent senders never refuse
//! each other.

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;

use super::{attr, n, s, update_failure, DynamoDbStore, WriteFailure};
use crate::store::{PaceStore, Reserved, StoreError};

const NEXT_SEND: &str = "next_send";
/// The item outlives its last write by this long before the TTL may remove it; a removed item is a
/// free slot, which is what it was.
const PACE_KEEP_SECS: i64 = 3_600;
/// Reserving gives up after this many refused writes in a row (other senders took each slot first).
const RESERVE_TRIES: usize = 8;

fn pace_key() -> (String, AttributeValue) {
    (attr::PK.to_owned(), s("pace#msc"))
}

fn next_send_of(item: Option<&super::Item>) -> Option<i64> {
    match item?.get(NEXT_SEND) {
        Some(AttributeValue::N(value)) => value.parse().ok(),
        _ => None,
    }
}

/// A refused write of the pace: where the slot stands (when the store says); any other failure.
fn where_it_stands(
    err: SdkError<UpdateItemError, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> Result<Option<i64>, StoreError> {
    match update_failure(err) {
        WriteFailure::ConditionFailed(item) => Ok(next_send_of(item.as_ref())),
        WriteFailure::Other(err) => Err(err),
    }
}

impl DynamoDbStore {
    /// An update of the pace's item, `#next` naming its slot.
    fn pace_update(&self) -> UpdateItemFluentBuilder {
        let (name, value) = pace_key();
        self.client
            .update_item()
            .table_name(&self.table)
            .key(name, value)
            .expression_attribute_names("#next", NEXT_SEND)
    }

    /// Takes the slot if it is free at `now_ms`; refused, where the slot stands (when the store says).
    async fn take_free_slot(
        &self,
        now_ms: i64,
        interval_ms: i64,
    ) -> Result<Result<(), Option<i64>>, StoreError> {
        let result = self
            .pace_update()
            .update_expression("SET #next = :after, #exp = :exp")
            .condition_expression("attribute_not_exists(#next) OR #next <= :now")
            .expression_attribute_names("#exp", attr::EXPIRES_AT)
            .expression_attribute_values(":after", n(now_ms + interval_ms))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":exp", n(now_ms / 1_000 + PACE_KEEP_SECS))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Ok(())),
            Err(err) => where_it_stands(err).map(Err),
        }
    }

    /// Takes the next slot while it is ahead of `now_ms` and not past `latest_ms`, moving it on by
    /// the interval in the same write (an increment, so concurrent senders never refuse each other):
    /// the slot taken; refused, where the slot stands.
    async fn take_next_slot(
        &self,
        now_ms: i64,
        interval_ms: i64,
        latest_ms: i64,
    ) -> Result<Result<i64, Option<i64>>, StoreError> {
        let result = self
            .pace_update()
            .update_expression("SET #next = #next + :interval")
            .condition_expression("#next > :now AND #next <= :latest")
            .expression_attribute_values(":interval", n(interval_ms))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":latest", n(latest_ms))
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => match next_send_of(output.attributes()) {
                Some(next) => Ok(Ok(next - interval_ms)),
                None => Err(StoreError::Unavailable(
                    "the pace's write returned no slot".into(),
                )),
            },
            Err(err) => where_it_stands(err).map(Err),
        }
    }
}

#[async_trait::async_trait]
impl PaceStore for DynamoDbStore {
    async fn reserve_send(
        &self,
        now_ms: i64,
        interval_ms: i64,
        latest_ms: i64,
    ) -> Result<Reserved, StoreError> {
        // Free first (at low load the slot usually is); after a refusal, what it returned decides.
        let mut known: Option<i64> = None;
        for _ in 0..RESERVE_TRIES {
            let refused = match known {
                Some(next) if next > latest_ms => return Ok(Reserved::NotBefore(next)),
                Some(next) if next > now_ms => {
                    match self.take_next_slot(now_ms, interval_ms, latest_ms).await? {
                        Ok(slot) => return Ok(Reserved::At(slot)),
                        Err(now_at) => now_at,
                    }
                }
                _ => match self.take_free_slot(now_ms, interval_ms).await? {
                    Ok(()) => return Ok(Reserved::At(now_ms)),
                    Err(now_at) => now_at,
                },
            };
            // A store that does not return the item with a refusal (dynalite): read it.
            known = match refused {
                Some(next) => Some(next),
                None => self.read_next_send().await?,
            };
        }
        Err(StoreError::Unavailable(
            "the pace of MSC's API is contended past its tries".into(),
        ))
    }

    async fn hold_sends(&self, until_ms: i64) -> Result<(), StoreError> {
        let result = self
            .pace_update()
            .update_expression("SET #next = :until, #exp = :exp")
            .condition_expression("attribute_not_exists(#next) OR #next < :until")
            .expression_attribute_names("#exp", attr::EXPIRES_AT)
            .expression_attribute_values(":until", n(until_ms))
            .expression_attribute_values(":exp", n(until_ms / 1_000 + PACE_KEEP_SECS))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Refused: held until later already.
            Err(err) => where_it_stands(err).map(|_| ()),
        }
    }
}

impl DynamoDbStore {
    /// Where the slot stands, read (a store that returns no item with a refusal).
    async fn read_next_send(&self) -> Result<Option<i64>, StoreError> {
        let (name, value) = pace_key();
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(name, value)
            .consistent_read(true)
            .send()
            .await
            .map_err(super::unavailable)?;
        Ok(next_send_of(output.item()))
    }
}
