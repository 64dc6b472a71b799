//! Files both ways, end to end: an end user's upload (a presigned `PUT` into moto's S3) relayed to
//! MSC as `Attachments`, an agent's file from MSC's webhook kept in the bucket and shown to the end
//! user behind a presigned `GET`; every refusal with its reason, nothing stored and nothing sent.
//! The file store's two adapters pass one contract (S3 on moto, the local runner's own links).

use std::sync::Arc;

use base64::Engine;
use handover_core::files::local::LocalFiles;
use handover_core::files::{Download, FileStore};
use handover_core::{Clock, ManualClock};
use handover_tests::world::{caic_reply, event, read, send, World};
use handover_tests::{dynamodb_harness, moto_files};
use http::StatusCode;
use serde_json::{json, Value};
use wiremock::ResponseTemplate;

/// A PNG's signature and header, then noise: `infer` knows it by its first bytes.
fn png(len: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bytes.extend((0..len).map(|i| (i * 7 % 251) as u8));
    bytes
}

fn pdf(len: usize) -> Vec<u8> {
    let mut bytes = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    bytes.extend((0..len).map(|i| (i * 13 % 256) as u8));
    bytes
}

fn http_client() -> reqwest::Client {
    handover_core::clients::new_http_client(None).expect("HTTP client")
}

async fn files_world() -> World {
    let bucket = format!("files-{}", uuid::Uuid::new_v4().simple());
    World::with_env(dynamodb_harness().await, &[("FILES_BUCKET", &bucket)]).await
}

/// A conversation handed over to MSC, its agent's conversation linked.
async fn handed_over(world: &World, session: &str) {
    let ask = format!("agent for {session}");
    world
        .caic_answers(
            &ask,
            caic_reply(session, "Connecting.", json!({"livechat": true})),
        )
        .await;
    world
        .caic_event_answers(200, caic_reply(session, "Your name?", json!({})))
        .await;
    world.msc_accepts_messages(ResponseTemplate::new(201)).await;
    world.channel_answers(ResponseTemplate::new(204)).await;
    let (status, body) = world
        .message(json!({"sessionId": session, "text": ask}))
        .await;
    assert_eq!(status, 200, "{body}");
    let slots = json!([{"name": "name", "value": "Jane"}]);
    assert_eq!(
        world.end_slot(session, slots).await.1,
        json!({"success": true})
    );
}

async fn ask_upload(
    world: &World,
    bearer: &str,
    session: &str,
    mut body: Value,
) -> (StatusCode, Value) {
    body["sessionId"] = json!(session);
    let request = event("POST", "/v1/uploads", "", Some(bearer), &body.to_string());
    read(send(&world.ingest, request).await)
}

/// The page's `PUT` of the bytes, with the headers the upload named.
async fn put(upload: &Value, bytes: Vec<u8>) -> reqwest::StatusCode {
    let mut request = http_client().put(upload["url"].as_str().expect("a url"));
    for (name, value) in upload["headers"].as_object().expect("headers") {
        request = request.header(name, value.as_str().expect("a header value"));
    }
    request.body(bytes).send().await.expect("PUT").status()
}

async fn send_file(
    world: &World,
    bearer: &str,
    session: &str,
    upload_id: &str,
) -> (StatusCode, Value) {
    let body = json!({"sessionId": session, "text": "", "attachments": [{"uploadId": upload_id}]});
    let request = event("POST", "/v1/messages", "", Some(bearer), &body.to_string());
    read(send(&world.ingest, request).await)
}

/// An upload the page asked for and made: its id.
async fn uploaded(
    world: &World,
    token: &str,
    session: &str,
    name: &str,
    content_type: &str,
    bytes: Vec<u8>,
) -> String {
    let (status, upload) = ask_upload(
        world,
        token,
        session,
        json!({"name": name, "type": content_type, "size": bytes.len()}),
    )
    .await;
    assert_eq!(status, 201, "{upload}");
    assert_eq!(put(&upload, bytes).await, 200);
    upload["uploadId"].as_str().expect("an id").to_owned()
}

fn decoded(attachment: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(attachment["Base64Content"].as_str().expect("Base64"))
        .expect("valid Base64")
}

#[tokio::test]
async fn a_png_from_the_page_arrives_at_msc_byte_for_byte_and_is_not_kept() {
    let world = files_world().await;
    handed_over(&world, "s-png").await;
    let token = world.token_for("s-png");
    let photo = png(300_000);
    let (status, upload) = ask_upload(
        &world,
        &token,
        "s-png",
        json!({"name": "broken kettle.png", "type": "image/png", "size": photo.len()}),
    )
    .await;
    assert_eq!(status, 201, "{upload}");
    assert_eq!(upload["method"], "PUT");
    let url = upload["url"].as_str().unwrap();
    assert!(url.contains("X-Amz-Expires="), "a presigned URL: {url}");
    assert!(
        url.contains("X-Amz-SignedHeaders=content-length%3Bcontent-type"),
        "its size and type are signed: {url}"
    );
    assert_eq!(upload["headers"]["content-type"], "image/png");
    assert_eq!(put(&upload, photo.clone()).await, 200);
    let before = world.msc_messages().await.len();

    let (status, reply) = send_file(
        &world,
        &token,
        "s-png",
        upload["uploadId"].as_str().unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["handledBy"], "agent");
    let sent = world.msc_messages().await;
    assert_eq!(sent.len(), before + 1);
    let message = sent.last().unwrap();
    assert_eq!(message["Attachments"][0]["FileName"], "broken kettle.png");
    assert_eq!(decoded(&message["Attachments"][0]), photo, "byte for byte");
    assert_eq!(message["Content"], "Sent a file: broken kettle.png");
    let key = format!(
        "uploads/s-png/{}",
        upload["uploadId"]
            .as_str()
            .unwrap()
            .split('.')
            .next()
            .unwrap()
    );
    let files = world.files.as_ref().unwrap();
    assert!(
        files.get(&key, 10).await.unwrap().is_none(),
        "MSC has it: no copy kept"
    );
}

#[tokio::test]
async fn a_pdf_from_the_agent_reaches_the_end_users_link_byte_for_byte() {
    let world = files_world().await;
    handed_over(&world, "s-pdf").await;
    // A file at the limit: its Base64 and the rest of MSC's body within the route's limit.
    let invoice = pdf(handover_core::domain::files::MAX_FILE_BYTES - 20);
    let reply = json!({"ConversationGuid": "guid-pdf", "ConversationExternalIdentifier": "s-pdf",
        "MessageExternalIdentifier": "m-pdf", "Content": "Here is your invoice.",
        "Attachments": [{"FileName": "../invoice\u{202e}fdp.pdf",
                         "Base64Content": base64::engine::general_purpose::STANDARD.encode(&invoice)}]});
    let (status, body) = world.msc_posts_message(reply.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"status": "delivered"}));

    let (status, outbox) = world.outbox("s-pdf", "").await;
    assert_eq!(status, 200);
    let message = &outbox["messages"][0];
    assert_eq!(message["text"], "Here is your invoice.");
    let file = &message["files"][0];
    assert_eq!(
        file["name"], "invoicefdp.pdf",
        "the path and the direction mark are gone"
    );
    assert_eq!(file["type"], "application/pdf");
    assert_eq!(file["size"], invoice.len());
    let url = file["url"].as_str().unwrap();
    assert!(url.contains("X-Amz-Expires=900"), "{url}");
    let fetched = http_client().get(url).send().await.unwrap();
    assert_eq!(fetched.status(), 200);
    let disposition = fetched.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    assert_eq!(fetched.headers()["content-type"], "application/pdf");
    assert_eq!(
        fetched.bytes().await.unwrap().to_vec(),
        invoice,
        "byte for byte"
    );

    // MSC's retry: delivered once, the same file.
    let (_, again) = world.msc_posts_message(reply).await;
    assert_eq!(again["status"], "duplicate");
    let (_, outbox) = world.outbox("s-pdf", "").await;
    assert_eq!(outbox["messages"].as_array().unwrap().len(), 1);

    // The page's live connection and the channel's webhook each get the file with a link of its own.
    let pushed: Value =
        serde_json::from_slice(&world.channel_pushes().await.last().unwrap().body).unwrap();
    assert_eq!(pushed["files"][0]["name"], "invoicefdp.pdf");
    assert!(pushed["files"][0]["url"]
        .as_str()
        .unwrap()
        .contains("X-Amz-Signature="));
}

#[tokio::test]
async fn an_agents_image_is_shown_inline_and_a_refused_file_is_named_to_the_end_user() {
    let world = files_world().await;
    handed_over(&world, "s-img").await;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let reply = json!({"ConversationExternalIdentifier": "s-img", "MessageExternalIdentifier": "m-img",
    "Content": "Like this?",
    "Attachments": [
        {"FileName": "kettle", "Base64Content": b64(&png(1_000))},
        {"FileName": "evil.svg", "Base64Content": b64(b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>")},
        {"FileName": "x.txt", "Base64Content": "%%% not base64"},
    ]});
    let (status, body) = world.msc_posts_message(reply).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "delivered");
    let refused: Vec<&str> = body["refusedFiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["reason"].as_str().unwrap())
        .collect();
    assert_eq!(refused, ["type_not_allowed", "not_base64"]);

    let (_, outbox) = world.outbox("s-img", "").await;
    let message = &outbox["messages"][0];
    let text = message["text"].as_str().unwrap();
    assert!(text.starts_with("Like this?"), "{text}");
    assert!(
        text.contains("\"evil.svg\", the file's bytes are of type text/html"),
        "{text}"
    );
    assert!(
        text.contains("\"x.txt\", the file's content is not Base64"),
        "{text}"
    );
    let files = message["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "only the image is kept: {files:?}");
    assert_eq!(files[0]["name"], "kettle.png", "named after what it is");
    let fetched = http_client()
        .get(files[0]["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert!(fetched.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("inline;"));
}

#[tokio::test]
async fn a_body_past_the_webhooks_limit_is_refused_and_other_routes_keep_theirs() {
    let world = files_world().await;
    let huge = "A".repeat(handover_core::http::MSC_MESSAGE_BODY_BYTES);
    let reply = json!({"ConversationExternalIdentifier": "s-big", "MessageExternalIdentifier": "m",
        "Attachments": [{"FileName": "big.pdf", "Base64Content": huge}]});
    let (status, body) = world.msc_posts_message(reply).await;
    assert_eq!(status, 413, "{body}");
    let (status, _) = world.message(json!({"text": "x".repeat(70_000)})).await;
    assert_eq!(status, 413, "the API's other routes keep 64 KiB");
}

/// What a refusal must leave as it was: MSC's inbox, and the session's stored state.
struct Before {
    msc: usize,
    session: Option<handover_core::Session>,
}

async fn before(world: &World, session: &str) -> Before {
    Before {
        msc: world.msc_messages().await.len(),
        session: world.store.get(session).await.unwrap(),
    }
}

async fn unchanged(world: &World, session: &str, was: Before, case: &str) {
    assert_eq!(
        world.msc_messages().await.len(),
        was.msc,
        "{case}: nothing sent to MSC"
    );
    assert_eq!(
        world.store.get(session).await.unwrap(),
        was.session,
        "{case}: nothing stored"
    );
}

#[tokio::test]
async fn each_refused_upload_says_why_stores_nothing_and_sends_nothing() {
    let world = files_world().await;
    handed_over(&world, "s-bad").await;
    let token = world.token_for("s-bad");
    let declared = [
        (
            "too large",
            json!({"name": "a.png", "type": "image/png", "size": 5 * 1024 * 1024}),
            422,
            "larger than 4194304 bytes",
        ),
        (
            "refused type",
            json!({"name": "a.svg", "type": "image/svg+xml", "size": 10}),
            422,
            "image/svg+xml, which is not allowed",
        ),
        (
            "a path",
            json!({"name": "../../etc/passwd.txt", "type": "text/plain", "size": 10}),
            422,
            "without paths",
        ),
        (
            "a bidi mark",
            json!({"name": "invoice\u{202e}fdp.exe", "type": "application/pdf", "size": 10}),
            422,
            "direction characters",
        ),
        (
            "a lying extension",
            json!({"name": "photo.exe", "type": "image/png", "size": 10}),
            422,
            "ends in .exe",
        ),
        (
            "empty",
            json!({"name": "a.png", "type": "image/png", "size": 0}),
            422,
            "empty",
        ),
    ];
    for (case, body, status, reason) in declared {
        let was = before(&world, "s-bad").await;
        let (got, answer) = ask_upload(&world, &token, "s-bad", body).await;
        assert_eq!(got, status, "{case}: {answer}");
        assert_eq!(answer["error"]["code"], "file_refused", "{case}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(reason), "{case}: {message}");
        unchanged(&world, "s-bad", was, case).await;
    }

    // Declared honestly, uploaded as something else: the bytes decide.
    let lying = [
        (
            "PDF bytes uploaded as a PNG",
            "photo.png",
            "image/png",
            pdf(100),
            "declared image/png but its bytes are application/pdf",
        ),
        (
            "an SVG with script as text",
            "notes.txt",
            "text/plain",
            b"<svg onload='alert(1)'><script>alert(1)</script></svg>".to_vec(),
            "text/html, which is not allowed",
        ),
        (
            "a program as a PDF",
            "invoice.pdf",
            "application/pdf",
            b"MZ\x90\0\x03\0\0\0\x04\0".to_vec(),
            "vnd.microsoft.portable-executable, which is not allowed",
        ),
    ];
    for (case, name, content_type, bytes, reason) in lying {
        let id = uploaded(&world, &token, "s-bad", name, content_type, bytes).await;
        let was = before(&world, "s-bad").await;
        let (status, answer) = send_file(&world, &token, "s-bad", &id).await;
        assert_eq!(status, 422, "{case}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(reason), "{case}: {message}");
        unchanged(&world, "s-bad", was, case).await;
        let key = format!("uploads/s-bad/{}", id.split('.').next().unwrap());
        assert!(
            world
                .files
                .as_ref()
                .unwrap()
                .get(&key, 10)
                .await
                .unwrap()
                .is_none(),
            "{case}: the refused upload is deleted"
        );
    }
}

#[tokio::test]
async fn a_size_is_any_whole_json_number_and_an_attachment_field_a_string() {
    let world = files_world().await;
    handed_over(&world, "s-shape").await;
    let token = world.token_for("s-shape");
    let (status, upload) = ask_upload(
        &world,
        &token,
        "s-shape",
        json!({"name": "a.png", "type": "image/png", "size": 120.0}),
    )
    .await;
    assert_eq!(status, 201, "120.0 is the integer 120: {upload}");
    assert_eq!(put(&upload, png(120)).await, 200);
    let was = before(&world, "s-shape").await;
    let (status, answer) = ask_upload(
        &world,
        &token,
        "s-shape",
        json!({"name": "a.png", "type": "image/png", "size": 120.5}),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not a whole number"));
    unchanged(&world, "s-shape", was, "a fractional size").await;

    let was = before(&world, "s-shape").await;
    let reply = json!({"ConversationExternalIdentifier": "s-shape", "MessageExternalIdentifier": "m-odd",
        "Attachments": [{"FileName": "", "Base64Content": {}}]});
    let (status, body) = world.msc_posts_message(reply).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_body", "{body}");
    unchanged(
        &world,
        "s-shape",
        was,
        "an attachment's content as an object",
    )
    .await;
}

#[tokio::test]
async fn an_upload_of_another_conversation_is_never_found() {
    let world = files_world().await;
    handed_over(&world, "s-mine").await;
    let mine = world.token_for("s-mine");
    let id = uploaded(&world, &mine, "s-mine", "photo.png", "image/png", png(100)).await;
    // Another conversation, handed over too, names that upload.
    handed_over(&world, "s-theirs").await;
    let theirs = world.token_for("s-theirs");
    let was = before(&world, "s-mine").await;
    let (status, answer) = send_file(&world, &theirs, "s-theirs", &id).await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"]["code"], "upload_not_found");
    let (status, answer) = send_file(&world, &theirs, "s-mine", &id).await;
    assert_eq!(
        status, 403,
        "a token names its own conversation only: {answer}"
    );
    unchanged(&world, "s-mine", was, "another conversation").await;
    // Still there for its own conversation.
    let (status, answer) = send_file(&world, &mine, "s-mine", &id).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn a_file_for_the_bot_is_refused_before_anything_is_asked() {
    let world = files_world().await;
    world
        .caic_answers("hello", caic_reply("s-bot", "Hi!", json!({})))
        .await;
    let (status, _) = world
        .message(json!({"sessionId": "s-bot", "text": "hello"}))
        .await;
    assert_eq!(status, 200);
    let token = world.token_for("s-bot");
    let (status, answer) = ask_upload(
        &world,
        &token,
        "s-bot",
        json!({"name": "a.png", "type": "image/png", "size": 10}),
    )
    .await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["code"], "files_need_agent");
    let asked = world.caic_requests("/ask").await.len();
    let fake = format!(
        "{}.{}",
        "a".repeat(32),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("a.png")
    );
    let (status, answer) = send_file(&world, &token, "s-bot", &fake).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["code"], "files_need_agent");
    assert_eq!(
        world.caic_requests("/ask").await.len(),
        asked,
        "CAIC was not asked"
    );
    let (status, answer) = send_file(&world, &token, "s-bot", "../../x").await;
    assert_eq!(status, 400, "{answer}");
}

#[tokio::test]
async fn with_files_off_the_mint_says_so_and_an_agents_file_is_named_not_dropped() {
    let world = World::on(dynamodb_harness().await).await;
    assert_eq!(minted(&world).await["files"], Value::Null);
    handed_over(&world, "s-off").await;
    let token = world.token_for("s-off");
    let (status, answer) = ask_upload(
        &world,
        &token,
        "s-off",
        json!({"name": "a.png", "type": "image/png", "size": 10}),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["error"]["code"], "files_off");
    let reply = json!({"ConversationExternalIdentifier": "s-off", "MessageExternalIdentifier": "m-off",
        "Attachments": [{"FileName": "invoice.pdf", "Base64Content": base64::engine::general_purpose::STANDARD.encode(pdf(10))}]});
    let (status, body) = world.msc_posts_message(reply).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["refusedFiles"][0]["reason"], "files_off");
    let (_, outbox) = world.outbox("s-off", "").await;
    let text = outbox["messages"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("\"invoice.pdf\", files are turned off"),
        "{text}"
    );
}

/// A new conversation's token, as the channel's backend asks for one.
async fn minted(world: &World) -> Value {
    let request = event(
        "POST",
        "/v1/conversations",
        "",
        Some(handover_tests::world::CHANNEL_KEY),
        "",
    );
    let (status, body) = read(send(&world.ingest, request).await);
    assert_eq!(status, 201, "{body}");
    body
}

#[tokio::test]
async fn the_mint_tells_a_page_which_files_it_may_send() {
    let world = files_world().await;
    assert_eq!(
        minted(&world).await["files"],
        json!({"types": ["image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain"],
               "maxBytes": 4_194_304})
    );
}

// The file store's contract, on both adapters.

async fn the_file_store_keeps_files_and_its_links_work(files: Arc<dyn FileStore>) {
    let client = http_client();
    files
        .put("agent/s-1/a-0", pdf(50), "application/pdf")
        .await
        .unwrap();
    let kept = files.get("agent/s-1/a-0", 1_000).await.unwrap().unwrap();
    assert_eq!(kept.bytes, pdf(50));
    assert_eq!(kept.content_type.as_deref(), Some("application/pdf"));
    let cut = files.get("agent/s-1/a-0", 10).await.unwrap().unwrap();
    assert_eq!(
        cut.bytes.len(),
        11,
        "read no further than one byte past the limit"
    );
    assert!(files.get("agent/s-1/none", 10).await.unwrap().is_none());

    let download = Download {
        name: "Factuur €5.pdf",
        content_type: "application/pdf",
        inline: false,
    };
    let url = files
        .download_url(
            "agent/s-1/a-0",
            &download,
            std::time::Duration::from_secs(60),
        )
        .await
        .unwrap();
    let fetched = client.get(&url).send().await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(
        fetched.headers()["content-disposition"],
        "attachment; filename=\"Factuur _5.pdf\"; filename*=UTF-8''Factuur%20%E2%82%AC5.pdf"
    );
    assert_eq!(fetched.bytes().await.unwrap().to_vec(), pdf(50));

    let upload = files
        .upload_url(
            "uploads/s-1/u1",
            "image/png",
            116,
            std::time::Duration::from_secs(60),
        )
        .await
        .unwrap();
    let mut put = client.put(&upload.url);
    for (name, value) in &upload.headers {
        put = put.header(name, value);
    }
    assert_eq!(put.body(png(100)).send().await.unwrap().status(), 200);
    let uploaded = files.get("uploads/s-1/u1", 1_000).await.unwrap().unwrap();
    assert_eq!(uploaded.bytes, png(100));
    assert_eq!(uploaded.content_type.as_deref(), Some("image/png"));

    files.delete("uploads/s-1/u1").await.unwrap();
    assert!(files.get("uploads/s-1/u1", 10).await.unwrap().is_none());
}

#[tokio::test]
async fn s3_on_moto_passes_the_file_store_contract() {
    let bucket = format!("files-{}", uuid::Uuid::new_v4().simple());
    the_file_store_keeps_files_and_its_links_work(moto_files(&bucket).await).await;
}

/// The local runner's links, served as the runner serves them.
async fn local_files(clock: Arc<ManualClock>) -> Arc<LocalFiles> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let clock: Arc<dyn Clock> = clock;
    let files = Arc::new(LocalFiles::new(&base, clock));
    let app = handover_core::files::local::routes(files.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    files
}

#[tokio::test]
async fn the_local_runners_files_pass_the_same_contract() {
    let files = local_files(Arc::new(ManualClock::starting_at(1_000))).await;
    the_file_store_keeps_files_and_its_links_work(files).await;
}

#[tokio::test]
async fn a_local_upload_link_expires_and_cannot_be_bent_to_another_type_or_size() {
    let clock = Arc::new(ManualClock::starting_at(1_000));
    let files = local_files(clock.clone()).await;
    let client = http_client();
    let ttl = std::time::Duration::from_secs(300);
    let upload = files
        .upload_url("uploads/s-1/u1", "image/png", 116, ttl)
        .await
        .unwrap();
    let put = |content_type: &str, bytes: Vec<u8>| {
        client
            .put(&upload.url)
            .header("content-type", content_type)
            .body(bytes)
            .send()
    };
    let other_type = put("text/html", png(100)).await.unwrap();
    assert_eq!(other_type.status(), 403);
    let other_size = put("image/png", png(101)).await.unwrap();
    assert_eq!(other_size.status(), 400);
    clock.advance(301);
    let expired = put("image/png", png(100)).await.unwrap();
    assert_eq!(expired.status(), 403);
    let body: Value = expired.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upload_link_expired");
    assert!(
        files.get("uploads/s-1/u1", 1_000).await.unwrap().is_none(),
        "nothing stored"
    );

    files
        .put("agent/s-1/a", png(10), "image/png")
        .await
        .unwrap();
    let download = Download {
        name: "a.png",
        content_type: "image/png",
        inline: true,
    };
    let url = files
        .download_url("agent/s-1/a", &download, ttl)
        .await
        .unwrap();
    let served = client.get(&url).send().await.unwrap();
    assert_eq!(served.headers()["x-content-type-options"], "nosniff");
    let bent = url.replace("type=image%2Fpng", "type=text%2Fhtml");
    assert_eq!(client.get(&bent).send().await.unwrap().status(), 403);
    clock.advance(301);
    assert_eq!(client.get(&url).send().await.unwrap().status(), 403);
}
