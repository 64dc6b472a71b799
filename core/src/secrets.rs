//! Secrets at cold start. `HANDOVER_SECRET_ARN` names one Secrets Manager secret holding a JSON object
//! whose keys are the secret variables' names; its values take the place of those variables.
//!
//! Why a lookup at cold start and not CloudFormation dynamic references: a dynamic reference resolves
//! into the function's environment, where anyone allowed `lambda:GetFunctionConfiguration` (and the
//! console) reads it in plain text. A lookup keeps the secrets in Secrets Manager, behind one IAM
//! permission on one secret; it costs one `GetSecretValue` per cold start, none per request.

use aws_sdk_secretsmanager::error::DisplayErrorContext;
use serde_json::Value;

use crate::config::{Env, NEXT_KEYS};

pub const SECRET_ARN_VARIABLE: &str = "HANDOVER_SECRET_ARN";

/// The variables that may (and in a deployment should) come from the secret: the peers' keys, and
/// every caller key with its successor.
pub fn secret_variables() -> impl Iterator<Item = &'static str> {
    [
        "CAIC_API_KEY",
        "MSC_PRESENCE_API_KEY",
        "MSC_API_KEY",
        "MSC_API_SECRET",
    ]
    .into_iter()
    .chain(NEXT_KEYS.iter().flat_map(|(key, next)| [*key, *next]))
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read secret {arn}: {reason}")]
    Unreadable { arn: String, reason: String },
    /// Names the key, never the value.
    #[error("secret {arn} is not usable: {reason}")]
    Malformed { arn: String, reason: String },
}

/// Reads the secret named by `HANDOVER_SECRET_ARN`, if set, into `env`.
pub async fn overlay_from_env(env: &mut Env) -> Result<(), SecretError> {
    let Some(arn) = env.optional(SECRET_ARN_VARIABLE).map(str::to_owned) else {
        return Ok(());
    };
    let config = crate::clients::sdk_config()
        .await
        .map_err(|e| SecretError::Unreadable {
            arn: arn.clone(),
            reason: e.to_string(),
        })?;
    let client = aws_sdk_secretsmanager::Client::new(&config);
    overlay(env, &client, &arn).await
}

pub async fn overlay(
    env: &mut Env,
    client: &aws_sdk_secretsmanager::Client,
    arn: &str,
) -> Result<(), SecretError> {
    let output = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| SecretError::Unreadable {
            arn: arn.to_owned(),
            reason: DisplayErrorContext(e).to_string(),
        })?;
    let malformed = |reason: String| SecretError::Malformed {
        arn: arn.to_owned(),
        reason,
    };
    let text = output
        .secret_string()
        .ok_or_else(|| malformed("no SecretString (binary secrets are not supported)".into()))?;
    let Ok(Value::Object(values)) = serde_json::from_str::<Value>(text) else {
        return Err(malformed("SecretString is not a JSON object".into()));
    };
    for (name, value) in values {
        if !secret_variables().any(|allowed| allowed == name) {
            let allowed: Vec<&str> = secret_variables().collect();
            return Err(malformed(format!(
                "unexpected key {name:?}; allowed: {}",
                allowed.join(", ")
            )));
        }
        let Value::String(value) = value else {
            return Err(malformed(format!("the value of {name} is not a string")));
        };
        env.set(&name, value);
    }
    Ok(())
}
