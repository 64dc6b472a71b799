//! The AWS configuration the functions build at cold start (`clients::sdk_config`), as Lambda's
//! environment gives it, talks to DynamoDB: region, credentials and the endpoint override come from the
//! environment without the SDK's loader, through our HTTP client. The environment is handed over as a
//! lookup rather than set on this process, which runs other tests beside it; the credentials provider
//! reads the process's own (the test command sets dummy ones).

use handover_core::store::dynamodb;

/// The configuration a function builds from Lambda's environment (region, credentials, a session token)
/// with `endpoint` (a variable naming moto) beside it.
fn lambda_like_config(endpoint: (&str, &str)) -> Option<aws_config::SdkConfig> {
    let lambda_like = [
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_SESSION_TOKEN", "session"),
        endpoint,
    ];
    let variable = |name: &str| {
        lambda_like
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, value)| value.to_string())
    };
    let http = handover_core::aws_http::sdk_http_client(
        handover_core::clients::new_http_client(None).expect("HTTP client"),
    );
    handover_core::clients::sdk_config_from_environment(&variable, Some(http))
}

#[tokio::test]
async fn the_functions_aws_configuration_reaches_dynamodb_from_a_lambda_like_environment() {
    let endpoint = handover_tests::dynamodb_endpoint();
    let config = lambda_like_config(("AWS_ENDPOINT_URL_DYNAMODB", &endpoint));
    assert!(
        config.is_some(),
        "a Lambda-like environment takes the direct path, not the SDK's loader"
    );
    let client =
        aws_sdk_dynamodb::Client::new(&config.expect("configuration from the environment"));
    let table = format!("sdk-config-{}", uuid::Uuid::new_v4().simple());
    dynamodb::ensure_table(&client, &table)
        .await
        .expect("table created through the functions' configuration");
    let described = client
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .expect("describe through the functions' configuration");
    assert_eq!(
        described.table().and_then(|t| t.table_name()),
        Some(table.as_str())
    );
    assert_eq!(
        client.config().region().map(|r| r.as_ref()),
        Some("eu-west-1")
    );
}

/// `AWS_ENDPOINT_URL_SCHEDULER` points the functions' EventBridge Scheduler at a stand-in (moto's
/// here): the wait for an agent is scheduled through the same configuration a function builds.
#[tokio::test]
async fn the_wait_timers_reach_the_scheduler_named_by_its_endpoint_variable() {
    use handover_core::waits::{AgentWait, EventBridgeScheduler, WaitTimers};
    let endpoint = handover_tests::dynamodb_endpoint();
    let config = lambda_like_config(("AWS_ENDPOINT_URL_SCHEDULER", &endpoint))
        .expect("configuration from the environment");
    let settings = handover_core::config::SchedulerSettings {
        group: format!("sdk-config-{}", uuid::Uuid::new_v4().simple()),
        target_arn: "arn:aws:lambda:eu-west-1:123456789012:function:agent-wait".into(),
        role_arn: "arn:aws:iam::123456789012:role/scheduler".into(),
    };
    handover_tests::moto_wait_timers(&settings).await;
    let wait = AgentWait {
        session_id: "sdk-config-session".into(),
        handover: "intake-1".into(),
        round: 1,
        at: 1_800_000_000,
        channel: None,
        skill: None,
    };
    let timers = EventBridgeScheduler::new(&config, settings.clone());
    timers.start(&wait).await.expect("scheduled");
    timers
        .start(&wait)
        .await
        .expect("a repeat is as good as done");
    let listed = handover_tests::scheduler_client()
        .list_schedules()
        .group_name(&settings.group)
        .send()
        .await
        .expect("schedules");
    let names: Vec<&str> = listed.schedules().iter().filter_map(|s| s.name()).collect();
    assert_eq!(names, [wait.schedule_name().as_str()]);
}
