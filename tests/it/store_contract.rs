//! One contract suite, run against every session store adapter.

mod memory {
    handover_tests::for_every_contract_test!(handover_tests::memory_harness);
}

mod dynamodb {
    handover_tests::for_every_contract_test!(handover_tests::dynamodb_harness);
}

/// What the DynamoDB adapter stores: a session's fields under their own names, the empty ones left out
/// (a session that never reached an agent carries none of the agent's); an item that cannot be read
/// as a session is an error naming it, never "no session" (that could hand a locked conversation
/// back to the bot).
#[tokio::test]
async fn dynamodb_items_leave_out_what_is_empty_and_an_unreadable_one_is_named() {
    use aws_sdk_dynamodb::types::AttributeValue::S;
    use handover_core::store::dynamodb::{ensure_table, DynamoDbStore};
    use handover_core::{
        AgentReply, AgentStore, Amended, ClaimOutcome, HandoverChange, HandoverStore, IntakeStore,
        SessionReader, StoreError, SystemClock,
    };

    let client = handover_tests::dynamodb_client();
    let table = format!("handover-items-{}", uuid::Uuid::new_v4().simple());
    ensure_table(&client, &table).await.expect("table");
    let store = DynamoDbStore::new(
        client.clone(),
        table.clone(),
        std::sync::Arc::new(SystemClock),
        handover_tests::policy(),
    );
    store
        .start_intake(&handover_tests::online_intake("items-1"))
        .await
        .expect("intake");
    let item = stored_item(&client, &table, "items-1").await;
    let mut names: Vec<&str> = item.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "agent_status",
            "channel",
            "expires_at",
            "intake_id",
            "pk",
            "skill",
            "started_at",
            "state",
            "token",
            "updated_at"
        ]
    );

    // A reply's digest is kept as 8 bytes of one binary attribute.
    let Ok(ClaimOutcome::Claimed(claim)) = store.claim("items-1", &[]).await else {
        panic!("claim")
    };
    assert!(store.complete("items-1", &claim.token).await.is_ok());
    let reply = HandoverChange::AgentReply(AgentReply {
        message_id: "m-1".into(),
        conversation_guid: None,
        agent_name: None,
        text: "Hello".into(),
        sent_at: 0,
        files: Vec::new(),
    });
    assert!(matches!(
        store.amend_handover("items-1", &reply).await,
        Ok(Amended::Applied(_))
    ));
    let item = stored_item(&client, &table, "items-1").await;
    let delivered = item.get("delivered_replies").and_then(|v| v.as_b().ok());
    assert_eq!(delivered.map(|blob| blob.as_ref().len()), Some(8));
    let entry = item
        .get("outbox")
        .and_then(|v| v.as_l().ok())
        .and_then(|l| l.first())
        .and_then(|v| v.as_m().ok())
        .expect("an outbox entry");
    let mut fields: Vec<&str> = entry.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["cursor", "from", "id", "sent_at", "text"]);
    assert_eq!(
        entry
            .get("from")
            .and_then(|v| v.as_s().ok())
            .map(String::as_str),
        Some("agent")
    );

    client
        .put_item()
        .table_name(&table)
        .item("pk", S("items-2".into()))
        .item("state", S("with_bot".into()))
        .send()
        .await
        .expect("put");
    match store.get("items-2").await {
        Err(StoreError::Corrupt { session_id, reason }) => {
            assert_eq!(session_id, "items-2");
            assert!(reason.contains("with_bot"), "{reason}");
        }
        other => panic!("an unreadable item: {other:?}"),
    }
}

async fn stored_item(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    pk: &str,
) -> std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
    client
        .get_item()
        .table_name(table)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(pk.into()))
        .send()
        .await
        .expect("get")
        .item
        .expect("item")
}
