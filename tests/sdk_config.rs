//! The AWS configuration the functions build at cold start (`wiring::sdk_config`), as Lambda's
//! environment gives it, talks to DynamoDB: region, credentials and the endpoint override come from the
//! environment without the SDK's loader, through our HTTP client. One test in its own process, since
//! it sets environment variables.

use handover_core::store::dynamodb;

#[tokio::test]
async fn the_functions_aws_configuration_reaches_dynamodb_from_a_lambda_like_environment() {
    let endpoint = handover_tests::dynamodb_endpoint();
    for (name, value) in [
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_SESSION_TOKEN", "session"),
        ("AWS_ENDPOINT_URL_DYNAMODB", endpoint.as_str()),
    ] {
        std::env::set_var(name, value);
    }
    for name in ["AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_ENDPOINT_URL"] {
        std::env::remove_var(name);
    }
    let variable = |name: &str| std::env::var(name).ok();
    assert!(
        handover_core::wiring::sdk_config_from_environment(&variable, None).is_some(),
        "a Lambda-like environment takes the direct path, not the SDK's loader"
    );

    let client = dynamodb::client_from_env()
        .await
        .expect("configuration from the environment");
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
