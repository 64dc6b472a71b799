//! The DynamoDB adapter: one item per session, partition key `pk`, TTL attribute `expires_at`.
//!
//! Every transition is one conditional write. A refused condition comes back with the item as it was
//! (`ReturnValuesOnConditionCheckFailure=ALL_OLD`), so telling "someone else holds it" from "nothing
//! there" costs no second read. Expired items may linger for days, so every condition names the expiry.

mod agent;
mod live;
mod pace;
mod queue;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;

use super::{
    claimed_event, completed_events, intake_session, released_events, ClaimOutcome, Enqueued,
    Guarded, HandoverStore, IdempotencyBegin, IdempotencyStore, IntakeStore, LockPolicy,
    LockSlider, Quota, QuotaStore, SessionReader, SlideOutcome, StartIntakeOutcome, StoreError,
    IDEMPOTENCY_KEEP_SECS, IDEMPOTENCY_PENDING_SECS,
};
use crate::clock::Clock;
use crate::domain::{
    relation_name, EndReason, HolderToken, IntakeAnswer, IntakeStart, QueuedMessage, Session,
    SessionState,
};

type Item = HashMap<String, AttributeValue>;

/// The attributes conditions and updates name: the domain's field names, as serde writes them.
mod attr {
    pub const PK: &str = "pk";
    pub const STATE: &str = "state";
    pub const TOKEN: &str = "token";
    pub const INTAKE: &str = "intake";
    pub const EXPIRES_AT: &str = "expires_at";
    pub const UPDATED_AT: &str = "updated_at";
    pub const FINGERPRINT: &str = "fingerprint";
    pub const REPLY: &str = "reply";
    pub const TRANSCRIPT: &str = "transcript";
    pub const RELATION_NAME: &str = "relation_name";
    pub const HISTORY: &str = "history";
    pub const END_REASON: &str = "end_reason";
    pub const USES: &str = "uses";
}

pub struct DynamoDbStore {
    client: Client,
    table: String,
    clock: Arc<dyn Clock>,
    policy: LockPolicy,
}

impl DynamoDbStore {
    pub fn new(
        client: Client,
        table: impl Into<String>,
        clock: Arc<dyn Clock>,
        policy: LockPolicy,
    ) -> Self {
        Self {
            client,
            table: table.into(),
            clock,
            policy,
        }
    }

    fn key(session_id: &str) -> (String, AttributeValue) {
        (attr::PK.to_owned(), s(session_id))
    }
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn unavailable<E, R>(err: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    StoreError::Unavailable(DisplayErrorContext(err).to_string())
}

/// A refused condition, with the item as it was; or any other failure.
enum WriteFailure {
    ConditionFailed(Option<Item>),
    Other(StoreError),
}

macro_rules! classify_write_error {
    ($err:expr, $variant:path) => {{
        let err = $err;
        match err.as_service_error() {
            Some($variant(refused)) => WriteFailure::ConditionFailed(refused.item().cloned()),
            _ => WriteFailure::Other(unavailable(err)),
        }
    }};
}

fn put_failure(
    err: SdkError<PutItemError, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> WriteFailure {
    classify_write_error!(err, PutItemError::ConditionalCheckFailedException)
}

fn update_failure(
    err: SdkError<UpdateItemError, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> WriteFailure {
    classify_write_error!(err, UpdateItemError::ConditionalCheckFailedException)
}

fn delete_failure(
    err: SdkError<DeleteItemError, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> WriteFailure {
    classify_write_error!(err, DeleteItemError::ConditionalCheckFailedException)
}

impl DynamoDbStore {
    /// A refused condition with the item as it was. DynamoDB sends it back with the refusal
    /// (`ReturnValuesOnConditionCheckFailure=ALL_OLD`); a compatible store that does not (dynalite) costs
    /// one consistent read here, on the rare refused path only.
    async fn with_item(
        &self,
        key: (String, AttributeValue),
        failure: WriteFailure,
    ) -> Result<WriteFailure, StoreError> {
        match failure {
            WriteFailure::ConditionFailed(None) => {
                let output = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .set_key(Some(HashMap::from([key])))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(unavailable)?;
                Ok(WriteFailure::ConditionFailed(output.item().cloned()))
            }
            other => Ok(other),
        }
    }

    /// The session a refused write found in its way (`None` when there was none), or the failure
    /// that was not a refusal.
    async fn refused_by(
        &self,
        session_id: &str,
        failure: WriteFailure,
    ) -> Result<Option<Session>, StoreError> {
        match self.with_item(Self::key(session_id), failure).await? {
            WriteFailure::ConditionFailed(old) => optional_session(old.as_ref()),
            WriteFailure::Other(err) => Err(err),
        }
    }
}

/// The stored form of a domain value (a session, its parts): serde with the domain's field names.
fn value<T: serde::Serialize + ?Sized>(of: &T) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(of).map_err(|err| StoreError::Unavailable(err.to_string()))
}

fn session_to_item(session: &Session) -> Result<Item, StoreError> {
    serde_dynamo::to_item(session).map_err(|err| StoreError::Unavailable(err.to_string()))
}

fn item_to_session(item: &Item) -> Result<Session, StoreError> {
    serde_dynamo::from_item(item.clone()).map_err(|err| StoreError::Corrupt {
        session_id: match item.get(attr::PK) {
            Some(AttributeValue::S(id)) => id.clone(),
            _ => String::new(),
        },
        reason: err.to_string(),
    })
}

fn optional_session(item: Option<&Item>) -> Result<Option<Session>, StoreError> {
    item.filter(|item| !item.is_empty())
        .map(item_to_session)
        .transpose()
}

/// The session a write returned (`ReturnValues=ALL_NEW`).
fn written(item: Option<&Item>, session_id: &str) -> Result<Session, StoreError> {
    optional_session(item)?.ok_or_else(|| {
        StoreError::Unavailable(format!(
            "a write to session {session_id:?} returned no attributes"
        ))
    })
}

#[async_trait]
impl SessionReader for DynamoDbStore {
    async fn get(&self, session_id: &str) -> Result<Option<Session>, StoreError> {
        let now = self.clock.now();
        Ok(self
            .get_stored(session_id)
            .await?
            .filter(|s| s.is_live(now)))
    }

    async fn get_stored(&self, session_id: &str) -> Result<Option<Session>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(HashMap::from([Self::key(session_id)])))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        optional_session(output.item())
    }
}

#[async_trait]
impl IntakeStore for DynamoDbStore {
    async fn start_intake(&self, start: &IntakeStart) -> Result<StartIntakeOutcome, StoreError> {
        let now = self.clock.now();
        let session = intake_session(start, &self.policy, now);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(session_to_item(&session)?))
            // rules::may_start_intake
            .condition_expression(
                "attribute_not_exists(#pk) OR #exp <= :now OR #st = :prechat OR #st = :ended",
            )
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#exp", attr::EXPIRES_AT)
            .expression_attribute_names("#st", attr::STATE)
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":prechat", s(SessionState::Prechat.as_str()))
            .expression_attribute_values(":ended", s(SessionState::Ended.as_str()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(StartIntakeOutcome::Started(session)),
            Err(err) => match self.refused_by(&start.session_id, put_failure(err)).await? {
                Some(in_the_way) => Ok(StartIntakeOutcome::Busy(in_the_way)),
                None => Err(StoreError::Unavailable(format!(
                    "start of intake for session {:?} was refused without an item in the way",
                    start.session_id
                ))),
            },
        }
    }

    async fn abandon_intake(
        &self,
        session_id: &str,
        token: &HolderToken,
    ) -> Result<Guarded<()>, StoreError> {
        let now = self.clock.now();
        // rules::holds_intake
        let condition = "#st = :prechat AND #tok = :token AND #exp > :now";
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(HashMap::from([Self::key(session_id)])))
            .condition_expression(condition)
            .expression_attribute_names("#st", attr::STATE)
            .expression_attribute_names("#tok", attr::TOKEN)
            .expression_attribute_names("#exp", attr::EXPIRES_AT)
            .expression_attribute_values(":prechat", s(SessionState::Prechat.as_str()))
            .expression_attribute_values(":token", s(token))
            .expression_attribute_values(":now", n(now))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Guarded::Applied(())),
            Err(err) => Ok(Guarded::refused(
                self.refused_by(session_id, delete_failure(err)).await?,
                now,
            )),
        }
    }
}

#[async_trait]
impl HandoverStore for DynamoDbStore {
    async fn claim(
        &self,
        session_id: &str,
        intake: &[IntakeAnswer],
    ) -> Result<ClaimOutcome, StoreError> {
        let now = self.clock.now();
        let token = HolderToken::generate();
        // The end user's name for MSC, kept once the handover is made (`relation_name`).
        let (relation, relation_value) = match relation_name(intake) {
            Some(name) => (", #rel = :rel", s(&name)),
            None => (" REMOVE #rel", AttributeValue::Null(true)),
        };
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(HashMap::from([Self::key(session_id)])))
            .update_expression(format!(
                "SET #st = :handing_over, #tok = :token, #exp = :lease, #upd = :now, #intake = :intake, \
                 #h = list_append(if_not_exists(#h, :none), :events){relation}"
            ))
            .expression_attribute_names("#rel", attr::RELATION_NAME)
            .expression_attribute_names("#h", attr::HISTORY)
            .expression_attribute_values(":none", AttributeValue::L(Vec::new()))
            .expression_attribute_values(
                ":events",
                value(&[claimed_event(intake, now)])?,
            );
        if relation.starts_with(',') {
            update = update.expression_attribute_values(":rel", relation_value);
        }
        let result = update
            // rules::may_claim
            .condition_expression(
                "(#st = :prechat AND #exp > :now) OR (#st = :handing_over AND #exp <= :now)",
            )
            .expression_attribute_names("#st", attr::STATE)
            .expression_attribute_names("#tok", attr::TOKEN)
            .expression_attribute_names("#exp", attr::EXPIRES_AT)
            .expression_attribute_names("#upd", attr::UPDATED_AT)
            .expression_attribute_names("#intake", attr::INTAKE)
            .expression_attribute_values(":prechat", s(SessionState::Prechat.as_str()))
            .expression_attribute_values(":handing_over", s(SessionState::HandingOver.as_str()))
            .expression_attribute_values(":token", s(&token))
            .expression_attribute_values(":lease", n(self.policy.lease_expiry(now)))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":intake", value(intake)?)
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => Ok(ClaimOutcome::Claimed(written(
                output.attributes(),
                session_id,
            )?)),
            Err(err) => Ok(ClaimOutcome::refused(
                self.refused_by(session_id, update_failure(err)).await?,
                Some(&token),
                now,
            )),
        }
    }

    async fn complete(
        &self,
        session_id: &str,
        token: &HolderToken,
    ) -> Result<Guarded<Session>, StoreError> {
        let now = self.clock.now();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(HashMap::from([Self::key(session_id)])))
            .update_expression(
                "SET #st = :handed_over, #exp = :lock, #upd = :now, \
                 #h = list_append(if_not_exists(#h, :none), :events) REMOVE #intake, #transcript",
            )
            .expression_attribute_names("#transcript", attr::TRANSCRIPT)
            .expression_attribute_names("#h", attr::HISTORY)
            .expression_attribute_values(":none", AttributeValue::L(Vec::new()))
            .expression_attribute_values(
                ":events",
                value(&completed_events(now, self.policy.lock_expiry(now)))?,
            )
            // rules::holds_claim
            .condition_expression("#st = :handing_over AND #tok = :token")
            .expression_attribute_names("#st", attr::STATE)
            .expression_attribute_names("#tok", attr::TOKEN)
            .expression_attribute_names("#exp", attr::EXPIRES_AT)
            .expression_attribute_names("#upd", attr::UPDATED_AT)
            .expression_attribute_names("#intake", attr::INTAKE)
            .expression_attribute_values(":handing_over", s(SessionState::HandingOver.as_str()))
            .expression_attribute_values(":handed_over", s(SessionState::HandedOver.as_str()))
            .expression_attribute_values(":token", s(token))
            .expression_attribute_values(":lock", n(self.policy.lock_expiry(now)))
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => Ok(Guarded::Applied(written(output.attributes(), session_id)?)),
            Err(err) => match self.refused_by(session_id, update_failure(err)).await? {
                // An earlier attempt of this call wrote the lock and its response was lost.
                Some(locked)
                    if locked.state == SessionState::HandedOver && locked.token == *token =>
                {
                    Ok(Guarded::Applied(locked))
                }
                other => Ok(Guarded::refused(other, now)),
            },
        }
    }

    async fn release(
        &self,
        session_id: &str,
        token: &HolderToken,
        refusal: &str,
    ) -> Result<Guarded<()>, StoreError> {
        let now = self.clock.now();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(HashMap::from([Self::key(session_id)])))
            .update_expression(
                "SET #st = :ended, #er = :failed, #exp = :keep, #upd = :now, \
                 #h = list_append(if_not_exists(#h, :none), :events) REMOVE #intake, #transcript",
            )
            // rules::holds_claim
            .condition_expression("#st = :handing_over AND #tok = :token")
            .expression_attribute_names("#st", attr::STATE)
            .expression_attribute_names("#tok", attr::TOKEN)
            .expression_attribute_names("#er", attr::END_REASON)
            .expression_attribute_names("#exp", attr::EXPIRES_AT)
            .expression_attribute_names("#upd", attr::UPDATED_AT)
            .expression_attribute_names("#h", attr::HISTORY)
            .expression_attribute_names("#intake", attr::INTAKE)
            .expression_attribute_names("#transcript", attr::TRANSCRIPT)
            .expression_attribute_values(":handing_over", s(SessionState::HandingOver.as_str()))
            .expression_attribute_values(":ended", s(SessionState::Ended.as_str()))
            .expression_attribute_values(":failed", s(EndReason::HandoverFailed.as_str()))
            .expression_attribute_values(":token", s(token))
            .expression_attribute_values(":keep", n(self.policy.lock_expiry(now)))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":none", AttributeValue::L(Vec::new()))
            .expression_attribute_values(":events", value(&released_events(refusal, now))?)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Guarded::Applied(())),
            Err(err) => Ok(Guarded::refused(
                self.refused_by(session_id, update_failure(err)).await?,
                now,
            )),
        }
    }

    async fn enqueue(
        &self,
        session_id: &str,
        message: &QueuedMessage,
    ) -> Result<Enqueued, StoreError> {
        queue::enqueue(self, session_id, message).await
    }

    async fn clear_queue(&self, session_id: &str) -> Result<(), StoreError> {
        queue::clear(self, session_id).await
    }
}

#[async_trait]
impl LockSlider for DynamoDbStore {
    async fn slide_lock(&self, session: &Session) -> Result<SlideOutcome, StoreError> {
        let now = self.clock.now();
        if !self.policy.slide_due(session, now) {
            return Ok(SlideOutcome::refused(Some(session), now));
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(HashMap::from([Self::key(&session.session_id)])))
            .update_expression("SET #exp = :lock, #upd = :now")
            // rules::may_slide: a concurrent slide that got there first moved the expiry past
            // :due_before, so of two racing slides only one writes.
            .condition_expression("#st = :handed_over AND #exp > :now AND #exp <= :due_before")
            .expression_attribute_names("#st", attr::STATE)
            .expression_attribute_names("#exp", attr::EXPIRES_AT)
            .expression_attribute_names("#upd", attr::UPDATED_AT)
            .expression_attribute_values(":handed_over", s(SessionState::HandedOver.as_str()))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":due_before", n(self.policy.slide_due_before(now)))
            .expression_attribute_values(":lock", n(self.policy.lock_expiry(now)))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => Ok(SlideOutcome::Slid(written(
                output.attributes(),
                &session.session_id,
            )?)),
            Err(err) => Ok(SlideOutcome::refused(
                self.refused_by(&session.session_id, update_failure(err))
                    .await?
                    .as_ref(),
                now,
            )),
        }
    }
}

const PENDING: &str = "pending";
const DONE: &str = "done";

fn idempotency_key(key: &str) -> (String, AttributeValue) {
    (attr::PK.to_owned(), s(&format!("idempotency#{key}")))
}

#[async_trait]
impl IdempotencyStore for DynamoDbStore {
    async fn begin_request(
        &self,
        key: &str,
        fingerprint: &str,
    ) -> Result<IdempotencyBegin, StoreError> {
        let now = self.clock.now();
        let (pk_name, pk) = idempotency_key(key);
        // This request's own mark: if the SDK retries a put that had landed (its response was lost),
        // the retry finds the mark and knows the key is already this request's.
        let token = HolderToken::generate();
        let item = HashMap::from([
            (pk_name, pk),
            (attr::STATE.to_owned(), s(PENDING)),
            (attr::TOKEN.to_owned(), s(&token)),
            (attr::FINGERPRINT.to_owned(), s(fingerprint)),
            (
                attr::EXPIRES_AT.to_owned(),
                n(now.saturating_add(IDEMPOTENCY_PENDING_SECS)),
            ),
        ]);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk) OR #exp <= :now")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#exp", attr::EXPIRES_AT)
            .expression_attribute_values(":now", n(now))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let old = match result {
            Ok(_) => return Ok(IdempotencyBegin::Fresh),
            Err(err) => match self
                .with_item(idempotency_key(key), put_failure(err))
                .await?
            {
                WriteFailure::ConditionFailed(old) => old.unwrap_or_default(),
                WriteFailure::Other(err) => return Err(err),
            },
        };
        let text = |name: &str| match old.get(name) {
            Some(AttributeValue::S(value)) => Some(value.clone()),
            _ => None,
        };
        if text(attr::STATE).as_deref() == Some(PENDING)
            && text(attr::TOKEN).as_deref() == Some(token.as_str())
        {
            return Ok(IdempotencyBegin::Fresh);
        }
        Ok(match (text(attr::STATE).as_deref(), text(attr::REPLY)) {
            (Some(DONE), Some(reply)) => IdempotencyBegin::Replay {
                fingerprint: text(attr::FINGERPRINT).unwrap_or_default(),
                reply,
            },
            _ => IdempotencyBegin::InProgress,
        })
    }

    async fn finish_request(&self, key: &str, reply: &str) -> Result<(), StoreError> {
        let now = self.clock.now();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(HashMap::from([idempotency_key(key)])))
            .update_expression("SET #st = :done, #reply = :reply, #exp = :keep")
            .condition_expression("#st = :pending")
            .expression_attribute_names("#st", attr::STATE)
            .expression_attribute_names("#reply", attr::REPLY)
            .expression_attribute_names("#exp", attr::EXPIRES_AT)
            .expression_attribute_values(":done", s(DONE))
            .expression_attribute_values(":pending", s(PENDING))
            .expression_attribute_values(":reply", s(reply))
            .expression_attribute_values(":keep", n(now.saturating_add(IDEMPOTENCY_KEEP_SECS)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => match update_failure(err) {
                // Finished already (a retried write) or taken over after expiry: nothing to do.
                WriteFailure::ConditionFailed(_) => Ok(()),
                WriteFailure::Other(err) => Err(err),
            },
        }
    }

    async fn abandon_request(&self, key: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(HashMap::from([idempotency_key(key)])))
            .condition_expression("#st = :pending")
            .expression_attribute_names("#st", attr::STATE)
            .expression_attribute_values(":pending", s(PENDING))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => match delete_failure(err) {
                WriteFailure::ConditionFailed(_) => Ok(()),
                WriteFailure::Other(err) => Err(err),
            },
        }
    }
}

/// Creates the session table (on-demand, `pk` string key, TTL on `expires_at`) unless it exists.
/// For local runs and tests; deployed tables come from the SAM template.
pub async fn ensure_table(client: &Client, table: &str) -> Result<(), StoreError> {
    match client.describe_table().table_name(table).send().await {
        Ok(_) => return Ok(()),
        Err(err)
            if matches!(
                err.as_service_error(),
                Some(DescribeTableError::ResourceNotFoundException(_))
            ) => {}
        Err(err) => return Err(unavailable(err)),
    }
    let created = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(attr::PK)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| StoreError::Unavailable(e.to_string()))?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(attr::PK)
                .key_type(KeyType::Hash)
                .build()
                .map_err(|e| StoreError::Unavailable(e.to_string()))?,
        )
        .send()
        .await;
    if let Err(err) = created {
        // Another process is creating the same table: it also enables TTL, so only wait for it.
        let raced = err
            .as_service_error()
            .is_some_and(|e| e.is_resource_in_use_exception());
        if raced {
            return wait_until_active(client, table).await;
        }
        return Err(unavailable(err));
    }
    wait_until_active(client, table).await?;
    let ttl = client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(attr::EXPIRES_AT)
                .enabled(true)
                .build()
                .map_err(|e| StoreError::Unavailable(e.to_string()))?,
        )
        .send()
        .await;
    match ttl {
        Ok(_) => Ok(()),
        // A local DynamoDB-compatible server without the TTL API (dynalite): nothing relies on
        // deletion, every read and condition names the expiry.
        Err(err)
            if err
                .raw_response()
                .is_some_and(|r| r.status().as_u16() == 400)
                && DisplayErrorContext(&err)
                    .to_string()
                    .contains("UnknownOperation") =>
        {
            tracing::warn!(
                table,
                "this server has no TTL API; expired items stay until replaced"
            );
            Ok(())
        }
        Err(err) => Err(unavailable(err)),
    }
}

/// A poll of its own rather than the SDK's `wait_until_table_exists`: that waiter's first retry comes
/// after a fixed 20 s, and a local server (dynalite) reports a new table as creating for a moment.
async fn wait_until_active(client: &Client, table: &str) -> Result<(), StoreError> {
    for _ in 0..120 {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(unavailable)?;
        let status = described.table().and_then(|t| t.table_status());
        if status == Some(&TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    Err(StoreError::Unavailable(format!(
        "table {table:?} did not become active within 60 s"
    )))
}

/// A quota's window outlives its end by this much before the TTL may remove it (the window's start is
/// in its key, so a late removal never counts for a later window).
const QUOTA_KEEP_SECS: i64 = 60;

#[async_trait]
impl QuotaStore for DynamoDbStore {
    async fn take_quota(
        &self,
        key: &str,
        limit: u32,
        window_secs: i64,
    ) -> Result<Quota, StoreError> {
        let now = self.clock.now();
        let (start, left) = super::quota_window(now, window_secs);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(attr::PK, s(&format!("quota#{key}#{start}")))
            .update_expression("SET #exp = if_not_exists(#exp, :exp) ADD #uses :one")
            .condition_expression("attribute_not_exists(#uses) OR #uses < :limit")
            .expression_attribute_names("#exp", attr::EXPIRES_AT)
            .expression_attribute_names("#uses", attr::USES)
            .expression_attribute_values(":exp", n(now + left + QUOTA_KEEP_SECS))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":limit", n(i64::from(limit)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Quota::Within),
            Err(err) => match update_failure(err) {
                WriteFailure::ConditionFailed(_) => Ok(Quota::Spent {
                    retry_after_secs: left,
                }),
                WriteFailure::Other(err) => Err(err),
            },
        }
    }
}
