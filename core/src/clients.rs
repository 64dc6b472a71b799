//! What a process builds once, at cold start, for every outbound call: TLS, the HTTP clients (the
//! process's client under the AWS SDK, and one per peer, see [`PeerClients`]), and the AWS SDK's
//! configuration. Adapters take these; nothing here knows about sessions, CAIC or MSC.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("HTTP client: {0}")]
pub struct HttpClientError(String);

/// Every AWS call is bounded, so no function runs into its Lambda timeout waiting on AWS: at most 3
/// attempts (the SDK's standard retry, exponential backoff with jitter, only for retryable errors) of
/// at most 1 s each, 3 s in all. Conditional writes are safe to retry: a retry that finds its own
/// earlier write is recognised by its token (see `ClaimOutcome::refused`).
pub fn sdk_timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_millis(500))
        .operation_attempt_timeout(Duration::from_secs(1))
        .operation_timeout(Duration::from_secs(3))
        .build()
}

fn sdk_retries() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard().with_max_attempts(3)
}

/// The AWS SDK's configuration, once per process: the process's HTTP client (see
/// [`crate::aws_http`]), our timeouts and retries. Straight from the environment when it has everything
/// (see [`sdk_config_from_environment`]), through the SDK's default loader otherwise. Shared by the
/// secret lookup and the session store, so a cold start builds it once.
pub async fn sdk_config() -> Result<aws_config::SdkConfig, HttpClientError> {
    static SDK_CONFIG: tokio::sync::OnceCell<aws_config::SdkConfig> =
        tokio::sync::OnceCell::const_new();
    SDK_CONFIG
        .get_or_try_init(|| async {
            let http = crate::aws_http::sdk_http_client(http_client()?);
            let variable = |name: &str| std::env::var(name).ok();
            if let Some(config) = sdk_config_from_environment(&variable, Some(http.clone())) {
                return Ok(config);
            }
            Ok(aws_config::defaults(aws_config::BehaviorVersion::latest())
                .http_client(http)
                .timeout_config(sdk_timeouts())
                .retry_config(sdk_retries())
                .load()
                .await)
        })
        .await
        .cloned()
}

/// The SDK configuration built directly from environment variables when they name the region and carry
/// the credentials, as Lambda's always do. The default loader would arrive at the same values (the
/// environment comes first in its region and credential chains) after reading profile files and
/// setting up provider chains: 0.49-0.69 ms against 0.25-0.28 ms in fresh processes, at every cold
/// start (docs/performance.md). `None`
/// (use the loader) when a value is missing or a profile is named, so profiles, SSO and container or
/// instance roles keep working everywhere else.
pub fn sdk_config_from_environment(
    variable: &dyn Fn(&str) -> Option<String>,
    http_client: Option<aws_sdk_dynamodb::config::SharedHttpClient>,
) -> Option<aws_config::SdkConfig> {
    let set = |name: &str| variable(name).filter(|value| !value.trim().is_empty());
    let region = set("AWS_REGION").or_else(|| set("AWS_DEFAULT_REGION"))?;
    set("AWS_ACCESS_KEY_ID")?;
    set("AWS_SECRET_ACCESS_KEY")?;
    if set("AWS_PROFILE").is_some() || set("AWS_CONFIG_FILE").is_some() {
        return None;
    }
    let flag = |name: &str| set(name).map(|value| value.trim().eq_ignore_ascii_case("true"));
    let mut config = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region))
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
            aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
        ))
        .sleep_impl(aws_smithy_async::rt::sleep::TokioSleep::new())
        .time_source(aws_smithy_async::time::SystemTimeSource::new())
        .timeout_config(sdk_timeouts())
        .retry_config(sdk_retries())
        .service_config(EndpointUrlsFromEnvironment {
            variables: ENDPOINT_URL_VARIABLES
                .iter()
                .filter_map(|name| set(name).map(|value| (name.to_string(), value)))
                .collect(),
            ignored: flag("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").unwrap_or(false),
        });
    config.set_http_client(http_client);
    config.set_use_fips(flag("AWS_USE_FIPS_ENDPOINT"));
    config.set_use_dual_stack(flag("AWS_USE_DUALSTACK_ENDPOINT"));
    Some(config.build())
}

/// The endpoint overrides the SDK reads for the services these functions call.
const ENDPOINT_URL_VARIABLES: &[&str] = &[
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_SCHEDULER",
    "AWS_ENDPOINT_URL_SQS",
];

/// `AWS_ENDPOINT_URL_<SERVICE>`, then `AWS_ENDPOINT_URL`, as the SDK's loader resolves them (its
/// resolver also reads profile files, which a Lambda function does not have).
#[derive(Debug)]
struct EndpointUrlsFromEnvironment {
    variables: std::collections::HashMap<String, String>,
    ignored: bool,
}

impl aws_types::service_config::LoadServiceConfig for EndpointUrlsFromEnvironment {
    fn load_config(&self, key: aws_types::service_config::ServiceConfigKey<'_>) -> Option<String> {
        if self.ignored && key.env() == "AWS_ENDPOINT_URL" {
            return None;
        }
        let service = key.service_id().to_ascii_uppercase().replace(' ', "_");
        self.variables
            .get(&format!("{}_{service}", key.env()))
            .or_else(|| self.variables.get(key.env()))
            .cloned()
    }
}

/// TLS for every outbound call, with Mozilla's root certificates compiled in: reading and parsing the
/// system's certificate files instead would cost every cold start (`docs/performance.md`). `extra_roots` (the deployment's
/// `AWS_CA_BUNDLE`, see [`crate::config::ca_bundle`]) adds the certificate authorities of a PEM file:
/// a private CA in front of CAIC or MSC, or the benchmark's peers.
fn tls_config(extra_roots: Option<&Path>) -> Result<rustls::ClientConfig, HttpClientError> {
    let mut roots =
        rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_roots {
        add_pem_roots(&mut roots, path)?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| HttpClientError(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

fn add_pem_roots(roots: &mut rustls::RootCertStore, path: &Path) -> Result<(), HttpClientError> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let unusable = |reason: String| {
        HttpClientError(format!(
            "{} ({}): {reason}",
            crate::config::CA_BUNDLE_VARIABLE,
            path.display()
        ))
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| unusable(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unusable(e.to_string()))?;
    let (added, _) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(unusable("no usable certificate in the file".into()));
    }
    Ok(())
}

/// Makes aws-lc-rs the process's rustls provider, for any client built without [`tls_config`]
/// (reqwest is compiled without a provider of its own). Idempotent.
#[cfg(any(test, feature = "test-util"))]
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The process's HTTP client under the AWS SDK (Secrets Manager, DynamoDB): connection pools and TLS
/// set up once, on first use (at cold start). Clones share it.
///
/// Only for a process with one tokio runtime, as every function is: a pooled connection is driven by
/// a task on the runtime that opened it, so a second runtime could pick up a connection whose driver
/// dies with the first. A process with several runtimes (a test binary: one per `#[tokio::test]`)
/// builds one client per runtime with [`new_http_client`].
pub fn http_client() -> Result<reqwest::Client, HttpClientError> {
    static CLIENT: std::sync::OnceLock<Result<reqwest::Client, String>> =
        std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            new_http_client(
                crate::config::ca_bundle(&crate::config::Env::from_process()).as_deref(),
            )
            .map_err(|HttpClientError(message)| message)
        })
        .clone()
        .map_err(HttpClientError)
}

/// A client of its own, configured as [`http_client`]'s, with a connection pool of its own;
/// `extra_roots` as in [`tls_config`].
pub fn new_http_client(extra_roots: Option<&Path>) -> Result<reqwest::Client, HttpClientError> {
    client_builder(tls_config(extra_roots)?)
        .build()
        .map_err(|e| HttpClientError(e.to_string()))
}

/// A deployed function's client for one peer (CAIC, MSC's API, MSC's presence, the channel's
/// webhook): configured as the process's client, with a pool of its own, able to open its connection
/// ahead of the first request ([`crate::open_ahead`]). It follows no redirects: a peer's client talks
/// to one host, and a redirect would also carry CAIC's API key, which is in its query string, to
/// another.
#[cfg(any(test, feature = "test-util"))]
pub fn peer_client(extra_roots: Option<&Path>) -> Result<reqwest::Client, HttpClientError> {
    peer_client_with(tls_config(extra_roots)?)
}

fn peer_client_with(tls: rustls::ClientConfig) -> Result<reqwest::Client, HttpClientError> {
    client_builder(tls)
        .redirect(reqwest::redirect::Policy::none())
        .connector_layer(crate::open_ahead::OpenAheadLayer::new())
        .build()
        .map_err(|e| HttpClientError(e.to_string()))
}

fn client_builder(tls: rustls::ClientConfig) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(Duration::from_millis(500))
        .pool_idle_timeout(Duration::from_secs(50))
}

/// The HTTP clients a function's peers are called with. Deployed, each peer has its own
/// ([`PeerClients::deployed`]), so that its connection can be opened ahead; tests and the local runner
/// hand one client to all (`From<&reqwest::Client>`).
#[derive(Clone)]
pub struct PeerClients {
    pub caic: reqwest::Client,
    pub msc: reqwest::Client,
    pub presence: reqwest::Client,
    pub channel: reqwest::Client,
    /// What the management API of the pages' live connections is called with (by the AWS SDK).
    pub management: reqwest::Client,
    /// The pages' live connections, when the function pushes to them: deployed, API Gateway's
    /// management API ([`PeerClients::with_live_connections`]); locally, the runner's sockets.
    pub live: Option<std::sync::Arc<dyn crate::live::ConnectionPost>>,
    /// Where the conversations' files are kept: deployed, the stack's bucket
    /// ([`PeerClients::with_files`]); locally, the runner's memory. None: files are off.
    pub files: Option<std::sync::Arc<dyn crate::files::FileStore>>,
    /// Where the waits for an agent are timed: deployed, EventBridge Scheduler
    /// ([`PeerClients::with_wait_timers`]); locally, the runner's own timers. None: nobody is told
    /// that no agent came.
    pub timers: Option<std::sync::Arc<dyn crate::waits::WaitTimers>>,
    /// Where messages for MSC are held (see [`crate::outbound`]).
    pub outbound: Option<std::sync::Arc<dyn crate::outbound::Outbound>>,
}

impl PeerClients {
    /// One client per peer, sharing one TLS configuration (`env`'s `AWS_CA_BUNDLE`, read once).
    pub fn deployed(env: &crate::config::Env) -> Result<Self, HttpClientError> {
        let tls = tls_config(crate::config::ca_bundle(env).as_deref())?;
        let client = || peer_client_with(tls.clone());
        Ok(Self {
            caic: client()?,
            msc: client()?,
            presence: client()?,
            channel: client()?,
            management: client()?,
            live: None,
            files: None,
            timers: None,
            outbound: None,
        })
    }

    pub async fn with_outbound(mut self, queue_url: Option<&str>) -> Result<Self, HttpClientError> {
        if let Some(url) = queue_url {
            self.outbound = Some(std::sync::Arc::new(crate::outbound::SqsOutbound::new(
                &sdk_config().await?,
                url,
            )));
        }
        Ok(self)
    }

    /// EventBridge Scheduler in the stack's schedule group, for the waits for an agent.
    pub async fn with_wait_timers(
        mut self,
        scheduler: Option<&crate::config::SchedulerSettings>,
    ) -> Result<Self, HttpClientError> {
        if let Some(settings) = scheduler {
            self.timers = Some(std::sync::Arc::new(
                crate::waits::EventBridgeScheduler::new(&sdk_config().await?, settings.clone()),
            ));
        }
        Ok(self)
    }

    /// The bucket `FILES_BUCKET` for the conversations' files, if set (addressed by path when an
    /// endpoint of its own is configured: an S3-compatible server).
    pub async fn with_files(mut self, bucket: Option<&str>) -> Result<Self, HttpClientError> {
        if let Some(bucket) = bucket {
            let own_endpoint = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
                .iter()
                .any(|name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty()));
            self.files = Some(std::sync::Arc::new(crate::files::s3::S3Files::new(
                &sdk_config().await?,
                bucket,
                own_endpoint,
            )));
        }
        Ok(self)
    }

    /// The management API at `url` (`LIVE_CONNECTIONS_URL`) for the live connections, if set.
    pub async fn with_live_connections(
        mut self,
        url: Option<&str>,
    ) -> Result<Self, HttpClientError> {
        if let Some(url) = url {
            self.live = Some(std::sync::Arc::new(crate::live::ManagementApi::new(
                &sdk_config().await?,
                self.management.clone(),
                url,
            )));
        }
        Ok(self)
    }
}

/// One of a function's peers, by its client in [`PeerClients`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Caic,
    Msc,
    Presence,
    Channel,
    /// API Gateway's management API, where pushes to pages' live connections go.
    Live,
}

impl PeerClients {
    /// Opens the connections to `peers` in the background ([`crate::open_ahead`]).
    pub fn open_ahead(&self, urls: &crate::config::PeerUrls, peers: &[Peer]) {
        for peer in peers {
            let (client, url) = match peer {
                Peer::Caic => (&self.caic, &urls.caic),
                Peer::Msc => (&self.msc, &urls.msc),
                Peer::Presence => (&self.presence, &urls.presence),
                Peer::Channel => (&self.channel, &urls.channel),
                Peer::Live => (&self.management, &urls.live),
            };
            if let Some(url) = url {
                crate::open_ahead::open_ahead(client, url);
            }
        }
    }
}

impl From<&reqwest::Client> for PeerClients {
    fn from(client: &reqwest::Client) -> Self {
        Self {
            caic: client.clone(),
            msc: client.clone(),
            presence: client.clone(),
            channel: client.clone(),
            management: client.clone(),
            live: None,
            files: None,
            timers: None,
            outbound: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};

    fn environment(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, value)| value.clone())
        }
    }

    const LAMBDA: &[(&str, &str)] = &[
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AWS_SESSION_TOKEN", "token"),
    ];

    #[test]
    fn the_sdk_configuration_comes_straight_from_a_complete_environment() {
        let config = sdk_config_from_environment(&environment(LAMBDA), None)
            .expect("Lambda's environment is complete");
        assert_eq!(config.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert!(config.credentials_provider().is_some());
        assert!(
            config.sleep_impl().is_some(),
            "timeouts and retries need a sleep"
        );
        assert_eq!(config.retry_config().map(|r| r.max_attempts()), Some(3));
        assert_eq!(
            config.timeout_config().and_then(|t| t.operation_timeout()),
            Some(Duration::from_secs(3))
        );
        assert_eq!(config.use_fips(), None);

        let default_region = [
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "a"),
            ("AWS_SECRET_ACCESS_KEY", "b"),
            ("AWS_USE_FIPS_ENDPOINT", "true"),
        ];
        let config = sdk_config_from_environment(&environment(&default_region), None)
            .expect("AWS_DEFAULT_REGION is a region too");
        assert_eq!(config.region().map(|r| r.as_ref()), Some("us-east-1"));
        assert_eq!(config.use_fips(), Some(true));
    }

    #[test]
    fn anything_short_of_a_complete_environment_goes_through_the_sdk_loader() {
        for missing in ["AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            let partial: Vec<(&str, &str)> = LAMBDA
                .iter()
                .copied()
                .filter(|(name, _)| *name != missing)
                .collect();
            assert!(
                sdk_config_from_environment(&environment(&partial), None).is_none(),
                "without {missing}"
            );
        }
        let blank: Vec<(&str, &str)> = LAMBDA
            .iter()
            .map(|&(name, value)| {
                if name == "AWS_REGION" {
                    (name, " ")
                } else {
                    (name, value)
                }
            })
            .collect();
        assert!(sdk_config_from_environment(&environment(&blank), None).is_none());
        let with_profile = [LAMBDA, &[("AWS_PROFILE", "dev")]].concat();
        assert!(sdk_config_from_environment(&environment(&with_profile), None).is_none());
    }

    #[test]
    fn endpoint_overrides_resolve_service_first_then_global() {
        let key = |service: &'static str| {
            ServiceConfigKey::builder()
                .service_id(service)
                .profile("endpoint_url")
                .env("AWS_ENDPOINT_URL")
                .build()
                .expect("key")
        };
        let urls = |pairs: &[(&str, &str)], ignored: bool| EndpointUrlsFromEnvironment {
            variables: pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            ignored,
        };
        let both = urls(
            &[
                ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000"),
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ],
            false,
        );
        assert_eq!(
            both.load_config(key("DynamoDB")).as_deref(),
            Some("http://127.0.0.1:8000")
        );
        assert_eq!(
            both.load_config(key("Secrets Manager")).as_deref(),
            Some("http://127.0.0.1:9000")
        );
        let secrets_only = urls(&[("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://sm")], false);
        assert_eq!(
            secrets_only.load_config(key("Secrets Manager")).as_deref(),
            Some("http://sm")
        );
        assert_eq!(secrets_only.load_config(key("DynamoDB")), None);
        assert_eq!(
            urls(&[("AWS_ENDPOINT_URL", "http://x")], true).load_config(key("DynamoDB")),
            None
        );

        let from_environment = sdk_config_from_environment(
            &environment(
                &[
                    LAMBDA,
                    &[("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000")],
                ]
                .concat(),
            ),
            None,
        )
        .expect("complete");
        let dynamodb = aws_sdk_dynamodb::config::Builder::from(&from_environment).build();
        assert!(
            format!("{dynamodb:?}").contains("127.0.0.1:8000"),
            "the DynamoDB client takes the service endpoint from the environment"
        );
    }

    #[test]
    fn the_process_client_builds_with_the_compiled_in_roots() {
        assert!(webpki_roots::TLS_SERVER_ROOTS.len() > 100);
        assert!(tls_config(None).is_ok());
        assert!(http_client().is_ok());
    }
}
