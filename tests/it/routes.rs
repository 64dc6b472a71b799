//! The routes in the SAM template, in the OpenAPI document and in the code's router are one set, and
//! each route is served by the same function everywhere.

use std::collections::BTreeSet;

use handover_core::http::ROUTES;
use serde_yaml::Value;

const TEMPLATE: &str = include_str!("../../infra/template.yaml");
const OPENAPI: &str = include_str!("../../docs/openapi.yaml");

type Route = (String, String, String);

fn code_routes() -> BTreeSet<Route> {
    ROUTES
        .iter()
        .map(|(method, path, function)| {
            (
                method.to_string(),
                path.to_string(),
                function.binary().to_owned(),
            )
        })
        .collect()
}

fn template_routes() -> BTreeSet<Route> {
    let template: Value = serde_yaml::from_str(TEMPLATE).expect("template is YAML");
    let resources = template["Resources"].as_mapping().expect("Resources");
    let mut routes = BTreeSet::new();
    for (_, resource) in resources {
        if resource["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        let binary = resource["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .expect("every function names its binary")
            .to_owned();
        // live-connection is invoked by the WebSocket API's integration and agent-wait by EventBridge
        // Scheduler's schedules, not by HTTP API events.
        let Some(events) = resource["Properties"]["Events"].as_mapping() else {
            assert!(
                ["live-connection", "agent-wait"].contains(&binary.as_str()),
                "only live-connection and agent-wait have no events, not {binary}"
            );
            continue;
        };
        for (_, event) in events {
            // msc-outbound is invoked by Lambda's SQS poller.
            if event["Type"] == "SQS" {
                assert_eq!(binary, "msc-outbound");
                continue;
            }
            assert_eq!(event["Type"], "HttpApi");
            assert_eq!(event["Properties"]["PayloadFormatVersion"], "2.0");
            let method = event["Properties"]["Method"]
                .as_str()
                .unwrap()
                .to_uppercase();
            let path = event["Properties"]["Path"].as_str().unwrap().to_owned();
            routes.insert((method, path, binary.clone()));
        }
    }
    routes
}

fn openapi_routes() -> BTreeSet<(String, String)> {
    let document: Value = serde_yaml::from_str(OPENAPI).expect("OpenAPI is YAML");
    let mut routes = BTreeSet::new();
    for (path, item) in document["paths"].as_mapping().expect("paths") {
        for (method, _) in item.as_mapping().expect("path item") {
            routes.insert((
                method.as_str().unwrap().to_uppercase(),
                path.as_str().unwrap().to_owned(),
            ));
        }
    }
    routes
}

#[test]
fn template_openapi_and_router_serve_the_same_routes() {
    let code = code_routes();
    assert_eq!(template_routes(), code, "template vs code");
    let without_function: BTreeSet<(String, String)> = code
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    assert_eq!(openapi_routes(), without_function, "OpenAPI vs code");
}

/// The WebSocket API's routes: those that reach live-connection are the ones its handler tells apart
/// (`handover_core::http::LIVE_ROUTES`), and `ping` is answered by a mock integration.
#[test]
fn the_websocket_api_routes_what_live_connection_handles() {
    let template: Value = serde_yaml::from_str(TEMPLATE).expect("template is YAML");
    let resources = template["Resources"].as_mapping().expect("Resources");
    let mut to_function = BTreeSet::new();
    let mut to_mock = BTreeSet::new();
    for (_, resource) in resources {
        if resource["Type"] != "AWS::ApiGatewayV2::Route" {
            continue;
        }
        let key = resource["Properties"]["RouteKey"]
            .as_str()
            .unwrap()
            .to_owned();
        let target = serde_yaml::to_string(&resource["Properties"]["Target"]).unwrap();
        if target.contains("${LiveIntegration}") {
            to_function.insert(key);
        } else {
            assert!(target.contains("${LivePingIntegration}"), "{key}: {target}");
            to_mock.insert(key);
        }
    }
    let handled: BTreeSet<String> = handover_core::http::LIVE_ROUTES
        .iter()
        .map(|route| route.to_string())
        .collect();
    assert_eq!(to_function, handled);
    assert_eq!(to_mock, BTreeSet::from(["ping".to_owned()]));
    assert!(TEMPLATE.contains("RouteSelectionExpression: $request.body.type"));
}

fn template_binaries() -> BTreeSet<String> {
    let template: Value = serde_yaml::from_str(TEMPLATE).expect("template is YAML");
    let resources = template["Resources"].as_mapping().expect("Resources");
    resources
        .iter()
        .filter(|(_, resource)| resource["Type"] == "AWS::Serverless::Function")
        .filter_map(|(_, resource)| resource["Metadata"]["BuildProperties"]["Binary"].as_str())
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_function_in_the_template_is_a_workspace_binary() {
    assert_eq!(template_binaries().len(), 8);
    for binary in template_binaries() {
        let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../functions")
            .join(&binary)
            .join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest)
            .unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
        assert!(text.contains(&format!("name = \"{binary}\"")), "{binary}");
    }
}

/// The routers serve the routes `ROUTES` names, each in its own function, and each behind its key: an
/// unauthenticated request is refused (401), not unknown (404).
#[tokio::test]
async fn each_function_router_serves_its_routes() {
    use handover_core::http::Function;
    use handover_tests::world::{event, send, World};
    let world = World::on(handover_tests::memory_harness().await).await;
    for (method, path, function) in ROUTES {
        let router = match function {
            Function::AnswerIngest => &world.ingest,
            Function::PresenceCheck => &world.presence,
            Function::PrechatComplete => &world.prechat,
            Function::OperatorHandover => &world.handover,
            Function::AgentEvents => &world.agent,
            // The WebSocket API's: tests/it/live.rs.
            Function::LiveConnection => continue,
        };
        let path = path.replace("{sessionId}", "s-1");
        let response = send(router, event(method, &path, "", None, "")).await;
        assert_eq!(response.status(), 401, "{method} {path}");
    }
}

/// CAIC's webhooks are served by an API of their own; with the mutual TLS domain on, its execute-api
/// endpoint is off, so only the domain (a client certificate required) reaches them, and the domain maps
/// no other route. MSC's webhook routes have throttles of their own.
#[test]
fn caic_webhooks_are_reachable_only_through_their_own_api_and_msc_webhooks_are_throttled_apart() {
    let template: Value = serde_yaml::from_str(TEMPLATE).expect("template is YAML");
    let resources = &template["Resources"];
    let mut caic_routes = BTreeSet::new();
    for (_, resource) in resources.as_mapping().expect("Resources") {
        if resource["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        for (_, event) in resource["Properties"]["Events"]
            .as_mapping()
            .into_iter()
            .flatten()
            .filter(|(_, event)| event["Type"] == "HttpApi")
        {
            let api = serde_yaml::to_string(&event["Properties"]["ApiId"]).unwrap();
            let route = format!(
                "{} {}",
                event["Properties"]["Method"].as_str().unwrap(),
                event["Properties"]["Path"].as_str().unwrap()
            );
            if api.contains("CaicHttpApi") {
                caic_routes.insert(route);
            } else {
                assert!(api.contains("HttpApi"), "{route}: {api}");
            }
        }
    }
    assert_eq!(
        caic_routes,
        BTreeSet::from([
            "POST /v1/prechat/complete".to_owned(),
            "POST /v1/presence".to_owned()
        ])
    );
    let disabled =
        serde_yaml::to_string(&resources["CaicHttpApi"]["Properties"]["DisableExecuteApiEndpoint"])
            .unwrap();
    assert!(
        disabled.contains("UseCaicMtlsDomain") && disabled.contains("- true"),
        "{disabled}"
    );
    let mapped =
        serde_yaml::to_string(&resources["CaicMtlsApiMapping"]["Properties"]["ApiId"]).unwrap();
    assert!(mapped.contains("CaicHttpApi"), "{mapped}");
    let settings = &resources["HttpApi"]["Properties"]["RouteSettings"];
    for route in ["POST /v1/msc/messages", "POST /v1/msc/events"] {
        assert!(
            !settings[route]["ThrottlingRateLimit"].is_null(),
            "{route} has its own throttle"
        );
    }
}

/// Every error code the service answers with is documented in the OpenAPI document.
#[test]
fn every_error_code_is_in_the_openapi_document() {
    let source = include_str!("../../core/src/http/error.rs");
    let codes: BTreeSet<&str> = source
        .split("(S::")
        .skip(1)
        .filter_map(|rest| rest.split('"').nth(1))
        .collect();
    assert!(codes.len() >= 19, "{codes:?}");
    for code in codes {
        assert!(OPENAPI.contains(code), "{code} is not in docs/openapi.yaml");
    }
}

/// Every variable `core/src/config.rs` reads is in `docs/configuration.md` (a `<KEY>_NEXT` by its
/// rotation row).
#[test]
fn every_setting_is_in_the_configuration_document() {
    let document = include_str!("../../docs/configuration.md");
    let source = include_str!("../../core/src/config.rs");
    let code = source.split("#[cfg(test)]").next().unwrap_or(source);
    let variables: BTreeSet<&str> = code
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|literal| {
            literal.len() > 3
                && literal
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
        .collect();
    assert!(variables.len() >= 30, "{variables:?}");
    for variable in variables {
        let documented = match variable.strip_suffix("_NEXT") {
            Some(key) => {
                document.contains(&format!("`{key}`")) && document.contains("`<KEY>_NEXT`")
            }
            None => document.contains(&format!("`{variable}`")),
        };
        assert!(documented, "{variable} is not in docs/configuration.md");
    }
}
