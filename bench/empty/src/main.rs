//! The floor the benchmark compares every function with: lambda_runtime answering each event with a
//! fixed API Gateway response, nothing else. Not deployed.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    run(service_fn(|_event: LambdaEvent<Value>| async {
        Ok::<_, Error>(json!({"statusCode": 200, "body": ""}))
    }))
    .await
}
