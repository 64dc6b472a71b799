//! Each function's role allows exactly the DynamoDB actions its code calls. The actions are not listed
//! by hand: every route of every function is driven through its paths that reach the store (a bot
//! turn, a handover made and refused, the window, replays, the ends, MSC's webhooks), on a proxy that
//! sees each request on the wire, and what each function sent is compared with its role in
//! `infra/template.yaml`.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use handover_core::{ClaimOutcome, StartIntakeOutcome};
use handover_tests::counting::DynamoCounter;
use handover_tests::world::{caic_reply, World};
use handover_tests::{counted_dynamodb_harness, online_intake};
use serde_json::json;
use wiremock::ResponseTemplate;

const TEMPLATE: &str = include_str!("../../infra/template.yaml");

/// The DynamoDB operations each function was seen sending.
#[derive(Default)]
struct Seen(BTreeMap<&'static str, BTreeSet<String>>);

impl Seen {
    async fn by<T>(
        &mut self,
        counter: &DynamoCounter,
        function: &'static str,
        call: impl Future<Output = T>,
    ) -> T {
        counter.reset();
        let output = call.await;
        self.0
            .entry(function)
            .or_default()
            .extend(counter.snapshot().into_keys());
        output
    }
}

/// The `dynamodb:` actions the template grants to the role named `role`.
fn granted(role: &str) -> BTreeSet<String> {
    let mut lines = TEMPLATE
        .lines()
        .skip_while(|line| *line != format!("  {role}:"));
    lines.next();
    lines
        .take_while(|line| line.trim().is_empty() || line.starts_with("   "))
        .filter_map(|line| line.trim().strip_prefix("- dynamodb:"))
        .map(str::to_owned)
        .collect()
}

fn set(actions: &[&str]) -> BTreeSet<String> {
    actions.iter().map(|a| (*a).to_owned()).collect()
}

fn template() -> serde_yaml::Value {
    serde_yaml::from_str(TEMPLATE).expect("template is YAML")
}

/// Every statement of every role's policies in the template, with the role's name.
fn role_statements(template: &serde_yaml::Value) -> Vec<(String, serde_yaml::Value)> {
    let resources = template["Resources"].as_mapping().expect("Resources");
    let mut statements = Vec::new();
    for (name, resource) in resources {
        if resource["Type"] != "AWS::IAM::Role" {
            continue;
        }
        let role = name.as_str().unwrap_or_default().to_owned();
        for policy in resource["Properties"]["Policies"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            for statement in policy["PolicyDocument"]["Statement"]
                .as_sequence()
                .into_iter()
                .flatten()
            {
                statements.push((role.clone(), statement.clone()));
            }
        }
    }
    statements
}

/// The roles of the functions whose definition names `variable` (in their environment).
/// A statement's `Action`: one, or a list.
fn actions_of(statement: &serde_yaml::Value) -> Vec<String> {
    match &statement["Action"] {
        serde_yaml::Value::String(one) => vec![one.clone()],
        many => many
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect(),
    }
}

fn roles_of_functions_given(template: &serde_yaml::Value, variable: &str) -> BTreeSet<String> {
    let resources = template["Resources"].as_mapping().expect("Resources");
    resources
        .values()
        .filter(|resource| {
            resource["Type"] == "AWS::Serverless::Function"
                && serde_yaml::to_string(resource)
                    .unwrap_or_default()
                    .contains(variable)
        })
        .map(|resource| {
            let role = serde_yaml::to_string(&resource["Properties"]["Role"]).unwrap_or_default();
            role.trim()
                .trim_start_matches("!GetAtt ")
                .replace(".Arn", "")
        })
        .collect()
}

const ANSWER_INGEST: &str = "AnswerIngestRole";
const PRECHAT: &str = "PrechatCompleteRole";
const OPERATOR: &str = "OperatorHandoverRole";
const AGENT: &str = "AgentEventsRole";
const PRESENCE: &str = "PresenceCheckRole";
const LIVE: &str = "LiveConnectionRole";
const AGENT_WAIT: &str = "AgentWaitRole";
const MSC_OUTBOUND: &str = "MscOutboundRole";

#[tokio::test]
async fn each_role_allows_exactly_the_dynamodb_actions_its_function_calls() {
    let mut seen = Seen::default();

    // A world whose peers all say yes: bot turns, a handover, relays, the agent, the ends.
    let (harness, counter) = counted_dynamodb_harness().await;
    let world = World::with_env(harness, &[("RELEASE_ON_ARCHIVE", "true")]).await;
    let c = &counter;
    world
        .caic_answers("hello", caic_reply("iam-1", "Hi!", json!({})))
        .await;
    world.handover_goes_through("iam-1", json!({})).await;
    world.channel_answers(ResponseTemplate::new(204)).await;
    seen.by(c, ANSWER_INGEST, world.message(json!({"text": "hello"})))
        .await;
    seen.by(
        c,
        ANSWER_INGEST,
        world.message(json!({"sessionId": "iam-1", "text": "hello"})),
    )
    .await;
    seen.by(c, PRESENCE, world.presence_get("channel=WebChat"))
        .await;
    seen.by(
        c,
        ANSWER_INGEST,
        world.message(json!({"sessionId": "iam-1", "text": "agent"})),
    )
    .await;
    // The end slot for a session that has no item: the refused claim comes back without one.
    seen.by(c, PRECHAT, world.end_slot("iam-none", json!([])))
        .await;
    seen.by(
        c,
        PRECHAT,
        world.end_slot("iam-1", json!([{"name": "name", "value": "Jane"}])),
    )
    .await;
    seen.by(
        c,
        ANSWER_INGEST,
        world.message(json!({"sessionId": "iam-1", "text": "hi agent"})),
    )
    .await;
    // Nobody came in time: agent-wait tells the end user, who keeps waiting.
    let handover = world.store.get("iam-1").await.unwrap().unwrap().intake_id;
    let wait = handover_core::waits::AgentWait {
        session_id: "iam-1".into(),
        handover,
        round: 1,
        at: 0,
        channel: None,
        skill: None,
    };
    seen.by(c, AGENT_WAIT, world.fire(&wait)).await;
    seen.by(
        c,
        ANSWER_INGEST,
        world.message(
            json!({"sessionId": "iam-1", "text": "Keep waiting", "choice": "keep_waiting"}),
        ),
    )
    .await;
    world.clock.advance(400);
    seen.by(
        c,
        ANSWER_INGEST,
        world.message(json!({"sessionId": "iam-1", "text": "slide"})),
    )
    .await;
    let reply = json!({"ConversationGuid": "iam-guid-1", "ConversationExternalIdentifier": "iam-1",
                       "MessageExternalIdentifier": "iam-m-1", "Content": "Hello Jane"});
    seen.by(c, AGENT, world.msc_posts_message(reply.clone()))
        .await;
    seen.by(c, AGENT, world.msc_posts_message(reply)).await;
    let started =
        json!({"Name": "ConversationStarted", "Payload": {"ConversationId": "iam-guid-1"}});
    seen.by(c, AGENT, world.msc_posts_event(started)).await;
    seen.by(c, ANSWER_INGEST, world.outbox("iam-1", "after=0"))
        .await;
    // A page's live connection: its handshake, then a resume (with messages to catch up on).
    seen.by(c, LIVE, world.live_resume("iam-tab-1", "iam-1", 0))
        .await;
    seen.by(c, OPERATOR, world.session_view("iam-1")).await;
    seen.by(c, OPERATOR, world.operator_handover("iam-1")).await;
    seen.by(c, OPERATOR, world.operator_release("iam-1")).await;
    seen.by(c, OPERATOR, world.operator_release("iam-1")).await;
    seen.by(c, OPERATOR, world.operator_handover("iam-none"))
        .await;

    // The window and a claim left unfinished: queued messages, a take-over, a reply finishing a lock.
    for (session, finisher) in [("iam-2", ANSWER_INGEST), ("iam-3", AGENT)] {
        world.store.start_intake(&online_intake(session)).await.ok();
        let Ok(ClaimOutcome::Claimed(_)) = world.store.claim(session, &[]).await else {
            panic!("claim")
        };
        seen.by(
            c,
            ANSWER_INGEST,
            world.message(json!({"sessionId": session, "text": "wait"})),
        )
        .await;
        world.clock.advance(31);
        let call = async {
            match finisher {
                AGENT => {
                    world
                        .msc_posts_message(json!({"ConversationExternalIdentifier": session,
                                                  "MessageExternalIdentifier": "iam-m-2",
                                                  "ConversationGuid": "iam-guid-3",
                                                  "Content": "I am here"}))
                        .await
                }
                _ => {
                    world
                        .message(json!({"sessionId": session, "text": "still?"}))
                        .await
                }
            }
        };
        seen.by(c, finisher, call).await;
    }
    let archived =
        json!({"Name": "ConversationArchived", "Payload": {"ConversationId": "iam-guid-3"}});
    seen.by(c, AGENT, world.msc_posts_event(archived)).await;
    // What was held for MSC: delivered at its pace, each delivery told.
    seen.by(c, MSC_OUTBOUND, world.drain()).await;
    // The lock lapses: the next turn records the end.
    seen.by(
        c,
        ANSWER_INGEST,
        world.message(json!({"sessionId": "iam-2", "text": "hi"})),
    )
    .await;
    world.clock.advance(86_401);
    seen.by(
        c,
        ANSWER_INGEST,
        world.message(json!({"sessionId": "iam-2", "text": "hello"})),
    )
    .await;
    // Replays of a keyed message.
    for _ in 0..2 {
        let keyed =
            world.message_with_key(json!({"sessionId": "iam-1", "text": "hello"}), "iam-k-1");
        seen.by(c, ANSWER_INGEST, keyed).await;
    }

    // A world whose peers say no: MSC refuses the handover, CAIC's event and then CAIC fail.
    let (harness, counter) = counted_dynamodb_harness().await;
    let failing = World::on(harness).await;
    let c = &counter;
    failing
        .caic_answers(
            "agent",
            caic_reply("iam-4", "Connecting.", json!({"livechat": true})),
        )
        .await;
    failing.caic_event_answers(500, json!({})).await;
    failing
        .presence_says(ResponseTemplate::new(200).set_body_string("Online"))
        .await;
    failing
        .msc_accepts_messages(ResponseTemplate::new(500))
        .await;
    // The prechat event fails: the intake just started is abandoned.
    seen.by(
        c,
        ANSWER_INGEST,
        failing.message(json!({"sessionId": "iam-4", "text": "agent"})),
    )
    .await;
    let Ok(StartIntakeOutcome::Started(_)) =
        failing.store.start_intake(&online_intake("iam-5")).await
    else {
        panic!("intake")
    };
    seen.by(c, PRECHAT, failing.end_slot("iam-5", json!([])))
        .await;
    // CAIC is down: the keyed request fails and frees its key.
    let keyed = failing.message_with_key(json!({"sessionId": "iam-6", "text": "down"}), "iam-k-2");
    seen.by(c, ANSWER_INGEST, keyed).await;

    let expected: BTreeMap<&str, BTreeSet<String>> = BTreeMap::from([
        (AGENT, set(&["GetItem", "PutItem", "UpdateItem"])),
        (
            ANSWER_INGEST,
            set(&["DeleteItem", "GetItem", "PutItem", "UpdateItem"]),
        ),
        (OPERATOR, set(&["GetItem", "UpdateItem"])),
        (PRECHAT, set(&["GetItem", "UpdateItem"])),
        (PRESENCE, BTreeSet::new()),
        (LIVE, set(&["GetItem", "UpdateItem"])),
        (AGENT_WAIT, set(&["GetItem", "UpdateItem"])),
        (MSC_OUTBOUND, set(&["GetItem", "UpdateItem"])),
    ]);
    assert_eq!(seen.0, expected, "what the code paths sent");
    for (role, actions) in &seen.0 {
        assert_eq!(&granted(role), actions, "{role} in infra/template.yaml");
    }
}

/// The functions that push to the pages' live connections (those given `LIVE_CONNECTIONS_URL`) may
/// post to and close connections of the WebSocket API's stage, and no other function may.
#[test]
fn only_the_functions_given_the_live_connections_may_manage_them() {
    let template = template();
    let pushing = roles_of_functions_given(&template, "LIVE_CONNECTIONS_URL");
    let mut managing = BTreeSet::new();
    for (role, statement) in role_statements(&template) {
        let text = serde_yaml::to_string(&statement).unwrap_or_default();
        if text.contains("execute-api:ManageConnections") {
            assert!(text.contains("/live/POST/@connections/*"), "{role}");
            managing.insert(role);
        }
    }
    assert_eq!(
        pushing,
        set(&[
            ANSWER_INGEST,
            OPERATOR,
            AGENT,
            LIVE,
            AGENT_WAIT,
            MSC_OUTBOUND
        ]),
        "the functions given LIVE_CONNECTIONS_URL"
    );
    assert_eq!(managing, pushing);
}

/// The outbound queue: the functions that hold messages for MSC (answer-ingest, and the two that hand
/// over, for what waited behind the handover) may send to it and nothing else; msc-outbound alone
/// receives, deletes and gives back (what Lambda's poller and its own backoff call); nothing else of
/// SQS is granted to anyone.
#[test]
fn only_the_holders_send_to_the_outbound_queue_and_only_its_drainer_takes_from_it() {
    let mut rights: BTreeSet<(String, String)> = BTreeSet::new();
    for (role, statement) in role_statements(&template()) {
        let actions = actions_of(&statement);
        let resource = serde_yaml::to_string(&statement["Resource"]).unwrap_or_default();
        for action in actions.into_iter().filter(|a| a.starts_with("sqs:")) {
            assert_eq!(
                resource.trim(),
                "!GetAtt OutboundQueue.Arn",
                "{role} {action}"
            );
            rights.insert((role.clone(), action));
        }
    }
    let expected: BTreeSet<(String, String)> = [
        (ANSWER_INGEST, "sqs:SendMessage"),
        (PRECHAT, "sqs:SendMessage"),
        (OPERATOR, "sqs:SendMessage"),
        (MSC_OUTBOUND, "sqs:ReceiveMessage"),
        (MSC_OUTBOUND, "sqs:DeleteMessage"),
        (MSC_OUTBOUND, "sqs:GetQueueAttributes"),
        (MSC_OUTBOUND, "sqs:ChangeMessageVisibility"),
    ]
    .into_iter()
    .map(|(role, action)| (role.to_owned(), action.to_owned()))
    .collect();
    assert_eq!(rights, expected);
}

/// Each role's rights on the files bucket: exactly what its function does with files (answer-ingest:
/// the uploads it signs, checks and deletes when refused, and links to agents' files; msc-outbound:
/// the uploads it sends to MSC and then deletes; agent-events: agents'
/// files kept and linked; live-connection: links in a catch-up), each on its own prefix; no other role
/// reaches the bucket.
#[test]
fn each_role_reaches_only_its_own_prefixes_of_the_files_bucket() {
    let mut rights: BTreeSet<(String, String, String)> = BTreeSet::new();
    for (role, statement) in role_statements(&template()) {
        let actions = actions_of(&statement);
        let resource = serde_yaml::to_string(&statement["Resource"]).unwrap_or_default();
        for action in actions.into_iter().filter(|a| a.starts_with("s3:")) {
            let prefix = ["uploads/*", "agent/*"]
                .into_iter()
                .find(|p| resource.contains(&format!("${{FilesBucket.Arn}}/{p}")))
                .unwrap_or("elsewhere");
            rights.insert((role.clone(), action, prefix.to_owned()));
        }
    }
    let expected: BTreeSet<(String, String, String)> = [
        (ANSWER_INGEST, "s3:PutObject", "uploads/*"),
        (ANSWER_INGEST, "s3:GetObject", "uploads/*"),
        (ANSWER_INGEST, "s3:DeleteObject", "uploads/*"),
        (ANSWER_INGEST, "s3:GetObject", "agent/*"),
        (AGENT, "s3:PutObject", "agent/*"),
        (AGENT, "s3:GetObject", "agent/*"),
        (MSC_OUTBOUND, "s3:GetObject", "uploads/*"),
        (MSC_OUTBOUND, "s3:DeleteObject", "uploads/*"),
        (LIVE, "s3:GetObject", "agent/*"),
    ]
    .into_iter()
    .map(|(role, action, prefix)| (role.to_owned(), action.to_owned(), prefix.to_owned()))
    .collect();
    assert_eq!(rights, expected);
}

/// The waits for an agent: the functions that hand over (and answer-ingest, which takes "keep
/// waiting") may create schedules in the stack's group and pass Scheduler's role to Scheduler, and
/// nothing else of Scheduler; Scheduler's role may invoke agent-wait and nothing else, and only
/// Scheduler, for this account's schedules of that group, may assume it.
#[test]
fn only_the_functions_that_hand_over_may_schedule_and_scheduler_may_only_invoke_agent_wait() {
    let template = template();
    let configured = roles_of_functions_given(&template, "AGENT_WAIT_SCHEDULE_GROUP");
    let mut scheduling = BTreeSet::new();
    for (name, statement) in role_statements(&template) {
        let action = serde_yaml::to_string(&statement["Action"]).unwrap_or_default();
        let resource = serde_yaml::to_string(&statement["Resource"]).unwrap_or_default();
        if action.contains("scheduler:") {
            assert_eq!(action.trim(), "scheduler:CreateSchedule", "{name}");
            assert!(
                resource.contains(":schedule/${AgentWaitScheduleGroup}/*"),
                "{name}: {resource}"
            );
            scheduling.insert(name.clone());
        }
        if action.contains("iam:PassRole") {
            assert_eq!(
                resource.trim(),
                "!GetAtt AgentWaitSchedulerRole.Arn",
                "{name}"
            );
            assert!(
                serde_yaml::to_string(&statement["Condition"])
                    .unwrap_or_default()
                    .contains("scheduler.amazonaws.com"),
                "{name}"
            );
        }
        if action.contains("lambda:InvokeFunction") {
            assert_eq!(name, "AgentWaitSchedulerRole");
            assert_eq!(resource.trim(), "!GetAtt AgentWaitFunction.Arn");
        }
    }
    assert_eq!(scheduling, set(&[ANSWER_INGEST, PRECHAT, OPERATOR]));
    assert_eq!(configured, scheduling);
    let trust = serde_yaml::to_string(
        &template["Resources"]["AgentWaitSchedulerRole"]["Properties"]["AssumeRolePolicyDocument"],
    )
    .unwrap_or_default();
    assert!(
        trust.contains("Service: scheduler.amazonaws.com"),
        "{trust}"
    );
    assert!(trust.contains("aws:SourceAccount"), "{trust}");
    assert!(
        trust.contains(":schedule/${AgentWaitScheduleGroup}/*"),
        "{trust}"
    );
}
