//! The AWS SDK's HTTP connector, on the process's reqwest client.
//!
//! Why: the SDK otherwise brings its own HTTP client (a second hyper client with its own connection
//! pool, HTTP/2 code and TLS configuration, built at every cold start), beside the reqwest clients
//! that talk to CAIC and MSC. One HTTP stack means one copy of the HTTP code in memory and one TLS
//! configuration to keep right (docs/performance.md).
//!
//! What the SDK still does itself: signing, retries with backoff, and the attempt and operation
//! timeouts (`clients::sdk_timeouts`), which wrap every call made through this connector. The
//! connection timeout is the reqwest client's.
//!
//! Made for the services these functions call (DynamoDB, Secrets Manager: JSON to the path `/`; API
//! Gateway's management API: `/{stage}/@connections/{id}`, the id percent-encoded by the SDK and kept
//! as it is by URL parsing): bodies in memory. The request goes out with the signed method, URI and headers unchanged
//! (reqwest may add `accept`, which is not signed); a service whose paths need byte-exact encoding
//! (S3 keys) would want a check that URL parsing keeps them as signed.

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;

/// `client` as the SDK's HTTP client.
pub fn sdk_http_client(client: reqwest::Client) -> SharedHttpClient {
    SharedHttpClient::new(ReqwestConnector { client })
}

#[derive(Debug, Clone)]
struct ReqwestConnector {
    client: reqwest::Client,
}

impl HttpClient for ReqwestConnector {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

impl HttpConnector for ReqwestConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.client.clone();
        HttpConnectorFuture::new(async move {
            let request = to_reqwest(&client, request)?;
            let response = client.execute(request).await.map_err(connector_error)?;
            from_reqwest(response).await
        })
    }
}

fn to_reqwest(
    client: &reqwest::Client,
    request: HttpRequest,
) -> Result<reqwest::Request, ConnectorError> {
    let user = |reason: String| ConnectorError::user(reason.into());
    let method = reqwest::Method::from_bytes(request.method().as_bytes())
        .map_err(|e| user(format!("HTTP method: {e}")))?;
    let url = reqwest::Url::parse(request.uri()).map_err(|e| user(format!("URI: {e}")))?;
    // DynamoDB and Secrets Manager requests are JSON documents held in memory.
    let body = request
        .body()
        .bytes()
        .map(axum::body::Bytes::copy_from_slice)
        .ok_or_else(|| user("streaming request bodies are not supported".into()))?;
    let mut builder = client.request(method, url);
    for (name, value) in request.headers() {
        builder = builder.header(name, value);
    }
    builder
        .body(body)
        .build()
        .map_err(|e| user(format!("request: {e}")))
}

async fn from_reqwest(response: reqwest::Response) -> Result<HttpResponse, ConnectorError> {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(connector_error)?;
    let mut converted = HttpResponse::new(status.into(), SdkBody::from(body));
    for (name, value) in &headers {
        converted.headers_mut().append(name.clone(), value.clone());
    }
    Ok(converted)
}

/// Timeouts and broken connections are transient (the SDK retries them); anything else is not.
fn connector_error(error: reqwest::Error) -> ConnectorError {
    if error.is_timeout() {
        ConnectorError::timeout(error.into())
    } else if error.is_connect() || error.is_request() || error.is_body() {
        ConnectorError::io(error.into())
    } else {
        ConnectorError::other(error.into(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str, body: SdkBody) -> HttpRequest {
        let mut request = HttpRequest::new(body);
        request.set_method("POST").expect("method");
        request.set_uri(uri.to_owned()).expect("uri");
        request
            .headers_mut()
            .insert("x-amz-target", "DynamoDB_20120810.GetItem");
        request
            .headers_mut()
            .insert("authorization", "AWS4-HMAC-SHA256 Credential=test");
        request
    }

    #[test]
    fn a_request_goes_out_with_the_signed_method_uri_headers_and_body() {
        let client = crate::clients::new_http_client(None).expect("client");
        let body = r#"{"TableName":"sessions"}"#;
        let sent = to_reqwest(
            &client,
            request(
                "https://dynamodb.eu-west-1.amazonaws.com/",
                SdkBody::from(body),
            ),
        )
        .expect("converted");
        assert_eq!(sent.method(), reqwest::Method::POST);
        assert_eq!(
            sent.url().as_str(),
            "https://dynamodb.eu-west-1.amazonaws.com/"
        );
        assert_eq!(sent.headers()["x-amz-target"], "DynamoDB_20120810.GetItem");
        assert_eq!(
            sent.headers()["authorization"],
            "AWS4-HMAC-SHA256 Credential=test"
        );
        assert_eq!(
            sent.body().and_then(|b| b.as_bytes()),
            Some(body.as_bytes())
        );
    }

    #[test]
    fn a_body_not_held_in_memory_is_refused_as_a_caller_error() {
        let client = crate::clients::new_http_client(None).expect("client");
        let error = to_reqwest(&client, request("http://127.0.0.1:1/", SdkBody::taken()))
            .expect_err("no bytes to send");
        assert!(error.is_user(), "{error:?}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_transient_error_the_sdk_retries() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        drop(listener);
        let connector = ReqwestConnector {
            client: crate::clients::new_http_client(None).expect("client"),
        };
        let error = connector
            .call(request(&format!("http://{address}/"), SdkBody::from("{}")))
            .await
            .expect_err("nothing listens");
        assert!(error.is_io(), "{error:?}");
    }
}
