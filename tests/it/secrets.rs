//! Secrets come from Secrets Manager at cold start (moto stands in), overriding the environment; a
//! malformed secret stops start-up naming the key, never showing a value.

use aws_sdk_secretsmanager::Client;
use handover_core::config::Env;
use handover_core::secrets::{overlay, SecretError};

fn client() -> Client {
    handover_tests::secrets_client_at(&handover_tests::dynamodb_endpoint())
}

async fn secret(client: &Client, value: &str) -> String {
    let name = format!("handover-test-{}", uuid::Uuid::new_v4().simple());
    let created = client
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .expect("moto creates the secret");
    created.arn().expect("an ARN").to_owned()
}

#[tokio::test]
async fn the_secret_overrides_the_environment() {
    let client = client();
    let arn = secret(
        &client,
        r#"{"CAIC_API_KEY": "from-secret", "OPERATOR_API_KEY": "operator-from-secret"}"#,
    )
    .await;
    let mut env = Env::from_pairs([("CAIC_API_KEY", "from-env"), ("CAIC_CULTURE", "nl")]);
    overlay(&mut env, &client, &arn).await.unwrap();
    assert_eq!(env.optional("CAIC_API_KEY"), Some("from-secret"));
    assert_eq!(
        env.optional("OPERATOR_API_KEY"),
        Some("operator-from-secret")
    );
    assert_eq!(
        env.optional("CAIC_CULTURE"),
        Some("nl"),
        "the rest is untouched"
    );
}

#[tokio::test]
async fn a_malformed_secret_names_the_key_but_not_the_value() {
    let client = client();
    for (value, mentions) in [
        (r#"{"DATABASE_PASSWORD": "hunter2"}"#, "DATABASE_PASSWORD"),
        (r#"{"MSC_API_SECRET": 987654}"#, "MSC_API_SECRET"),
        ("hunter2", "not a JSON object"),
    ] {
        let arn = secret(&client, value).await;
        let err = overlay(&mut Env::default(), &client, &arn)
            .await
            .unwrap_err();
        assert!(matches!(err, SecretError::Malformed { .. }));
        let shown = err.to_string();
        assert!(shown.contains(mentions), "{shown}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("987654"),
            "{shown}"
        );
    }
    let missing = overlay(
        &mut Env::default(),
        &client,
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:nope",
    )
    .await;
    assert!(matches!(missing, Err(SecretError::Unreadable { .. })));
}
