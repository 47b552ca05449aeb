//! Issue 15, attachments, against the real binary: an image uploaded over HTTP with a session's
//! own credentials and sent in a message reaches the other side on WebSocket, long-polling and
//! the HTTP API with the same `attachment`, and its bytes are served only to participants; an
//! attachment sent in an internal note is never served to the visitor; uploads are bounded in
//! size, type, rate and content; the bytes live in the store (embedded, Postgres across two
//! processes) or in `CHAT_UPLOAD_DIR`.

mod common;

use chat_storage::test_support::TestPostgres;
use common::poller::Poller;
use common::{two_gateways, Client, Gateway};
use serde_json::{json, Value};

const API_KEY: &str = "test-api-key-attachments-0123456789";

/// A real 1×1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0xF8, 0xCF, 0xC0, 0xF0,
    0x1F, 0x00, 0x05, 0x00, 0x01, 0xFF, 0x89, 0x99, 0x3D, 0x1D, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

/// What an upload or a download answered.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    bytes: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn upload(
    gw: &Gateway,
    token: Option<&str>,
    query: &str,
    content_type: &str,
    bytes: &[u8],
) -> Answer {
    let mut request = reqwest::Client::new()
        .post(gw.http(&format!("/chat/api/attachments{query}")))
        .header("Content-Type", content_type)
        .body(bytes.to_vec());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    answer(request).await
}

async fn download(gw: &Gateway, token: &str, id: &str) -> Answer {
    let request = reqwest::Client::new()
        .get(gw.http(&format!("/chat/api/attachments/{id}")))
        .bearer_auth(token);
    answer(request).await
}

async fn answer(request: reqwest::RequestBuilder) -> Answer {
    let response = tokio::time::timeout(std::time::Duration::from_secs(15), request.send())
        .await
        .expect("no answer within 15 s")
        .expect("request failed");
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        bytes: response.bytes().await.unwrap().to_vec(),
    }
}

fn token_of(client: &Client) -> String {
    client.welcome["visitor_token"]
        .as_str()
        .expect("a visitor token")
        .to_string()
}

#[tokio::test]
async fn an_image_travels_on_every_path_and_is_served_only_to_participants() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[("CHAT_API_KEY", API_KEY)]);
    let mut visitor = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    let uploads = &visitor.welcome["uploads"];
    assert_eq!(uploads["max_bytes"], 5 * 1024 * 1024, "{}", visitor.welcome);
    assert!(
        uploads["types"]
            .as_array()
            .unwrap()
            .contains(&json!("image/png")),
        "{uploads}"
    );
    visitor.request(json!({"type":"resume","cursors":{}})).await;
    let vtoken = token_of(&visitor);
    let agent_token = gw.agent_token("alice", "Alice");
    let mut agent = Client::connect(&gw.ws(&format!("/ws-admin/?token={agent_token}")), &[]).await;
    agent.request(json!({"type":"resume","cursors":{}})).await;

    // The visitor uploads before having a conversation, then sends it without text.
    let up = upload(&gw, Some(&vtoken), "?name=../photo.png", "image/png", PNG).await;
    assert_eq!(up.status, 201, "{}", up.json());
    let attachment = up.json()["attachment"].clone();
    assert_eq!(attachment["name"], "photo.png", "{attachment}");
    assert_eq!(attachment["content_type"], "image/png");
    assert_eq!(attachment["size"], PNG.len());
    let id = attachment["id"].as_str().unwrap().to_string();
    let ack = visitor
        .request(json!({"type":"send","client_msg_id":"img1","body":"","attachment_id":id}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["message"]["attachment"], attachment, "{ack}");
    let conversation = ack["message"]["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();

    // The agent gets it live with the same attachment, and reads the bytes.
    let got = agent
        .wait_for(|e| e["type"] == "message" && e["message"]["client_msg_id"] == "img1")
        .await;
    assert_eq!(got["message"]["attachment"], attachment, "{got}");
    let bytes = download(&gw, &agent_token, &id).await;
    assert_eq!(bytes.status, 200);
    assert_eq!(bytes.bytes, PNG);
    assert_eq!(bytes.header("content-type"), "image/png");
    assert!(bytes.header("content-disposition").starts_with("inline"));
    assert_eq!(bytes.header("x-content-type-options"), "nosniff");
    assert!(bytes.header("content-security-policy").contains("sandbox"));
    // So does the uploader; the API key too.
    assert_eq!(download(&gw, &vtoken, &id).await.bytes, PNG);
    assert_eq!(download(&gw, API_KEY, &id).await.status, 200);

    // Another visitor neither reads it nor sends it: the same answer as for no attachment.
    let stranger = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    let stoken = token_of(&stranger);
    let refused = download(&gw, &stoken, &id).await;
    assert_eq!(
        (refused.status, refused.json()["error"].clone()),
        (404, json!("not_found"))
    );
    let missing = download(&gw, &stoken, &uuid::Uuid::new_v4().to_string()).await;
    assert_eq!(missing.status, 404);
    let mut stranger = stranger;
    let stolen = stranger
        .request(json!({"type":"send","body":"mine now","attachment_id":id}))
        .await;
    assert_eq!(stolen["code"], "not_found", "{stolen}");
    // No credentials, or a forged visitor token.
    assert_eq!(upload(&gw, None, "", "image/png", PNG).await.status, 401);
    let forged = format!("{}x", &vtoken[..vtoken.len() - 1]);
    assert_eq!(download(&gw, &forged, &id).await.status, 401);

    // The agent answers with a PDF: a download, not inline, on every path to the visitor.
    let pdf = b"%PDF-1.4\n%%EOF\n";
    let no_conversation = upload(
        &gw,
        Some(&agent_token),
        "?name=a.pdf",
        "application/pdf",
        pdf,
    )
    .await;
    assert_eq!(no_conversation.status, 400, "agents name the conversation");
    let up = upload(
        &gw,
        Some(&agent_token),
        &format!("?name=invoice.pdf&conversation_id={conversation}"),
        "application/pdf",
        pdf,
    )
    .await;
    assert_eq!(up.status, 201, "{}", up.json());
    let invoice = up.json()["attachment"].clone();
    let invoice_id = invoice["id"].as_str().unwrap().to_string();
    agent
        .request(json!({"type":"send","conversation_id":conversation,"client_msg_id":"pdf1","body":"your invoice","attachment_id":invoice_id}))
        .await;
    let live = visitor
        .wait_for(|e| e["type"] == "message" && e["message"]["client_msg_id"] == "pdf1")
        .await;
    assert_eq!(live["message"]["attachment"], invoice, "{live}");
    let file = download(&gw, &vtoken, &invoice_id).await;
    assert_eq!(file.bytes, pdf);
    assert!(file.header("content-disposition").starts_with("attachment"));
    assert!(file.header("content-disposition").contains("invoice.pdf"));

    // Long-polling: the same visitor resumed from the start gets both with their attachments.
    let mut poller = Poller::open(
        &gw,
        &format!("/ws-visitor/poll?site=default&token={vtoken}"),
    )
    .await;
    let answer = poller
        .request(json!({"type":"resume","cursors":{conversation.clone(): 0}}))
        .await;
    assert_eq!(answer["replayed"], 2, "{answer}");
    let replayed = poller
        .poll_until(|e| e["type"] == "message" && e["message"]["seq"] == 2)
        .await;
    let carried: Vec<&Value> = replayed
        .iter()
        .filter(|e| e["type"] == "message")
        .map(|e| &e["message"]["attachment"])
        .collect();
    assert_eq!(carried, vec![&attachment, &invoice]);

    // The site's own server sends one over the HTTP API, with the API key.
    let up = upload(
        &gw,
        Some(API_KEY),
        &format!("?name=receipt.txt&conversation_id={conversation}"),
        "text/plain",
        b"paid",
    )
    .await;
    assert_eq!(up.status, 201, "{}", up.json());
    let receipt = up.json()["attachment"].clone();
    let sent = reqwest::Client::new()
        .post(gw.http(&format!("/chat/api/conversations/{conversation}/messages")))
        .header("X-API-Key", API_KEY)
        .json(&json!({"body":"receipt","attachment_id":receipt["id"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 201);
    let sent: Value = sent.json().await.unwrap();
    assert_eq!(sent["message"]["attachment"], receipt, "{sent}");
    let bad = reqwest::Client::new()
        .post(gw.http(&format!("/chat/api/conversations/{conversation}/messages")))
        .header("X-API-Key", API_KEY)
        .json(&json!({"body":"x","attachment_id":"not-an-id"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    // The HTTP API's history, and `history` on the socket.
    let messages = reqwest::Client::new()
        .get(gw.http(&format!("/chat/api/conversations/{conversation}/messages")))
        .header("X-API-Key", API_KEY)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(messages["messages"][0]["attachment"], attachment);
    let history = visitor
        .request(json!({"type":"history","conversation_id":conversation}))
        .await;
    assert_eq!(history["messages"][1]["attachment"], invoice, "{history}");
}

#[tokio::test]
async fn an_attachment_in_a_note_is_never_served_to_the_visitor() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[]);
    let mut visitor = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    let vtoken = token_of(&visitor);
    let ack = visitor.request(json!({"type":"send","body":"hello"})).await;
    let conversation = ack["message"]["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();
    let agent_token = gw.agent_token("alice", "Alice");
    let mut agent = Client::connect(&gw.ws(&format!("/ws-admin/?token={agent_token}")), &[]).await;
    let up = upload(
        &gw,
        Some(&agent_token),
        &format!("?name=internal.png&conversation_id={conversation}"),
        "image/png",
        PNG,
    )
    .await;
    let id = up.json()["attachment"]["id"].as_str().unwrap().to_string();
    // Uploaded for the conversation but not sent: not the visitor's yet.
    assert_eq!(download(&gw, &vtoken, &id).await.status, 404);
    let note = agent
        .request(json!({"type":"send","conversation_id":conversation,"body":"screenshot","note":true,"attachment_id":id}))
        .await;
    assert_eq!(note["message"]["kind"], "note", "{note}");
    assert_eq!(note["message"]["attachment"]["id"], id.as_str());
    assert_eq!(download(&gw, &vtoken, &id).await.status, 404);
    assert_eq!(download(&gw, &agent_token, &id).await.bytes, PNG);
    // Sent again in a reply the visitor sees, it becomes theirs to read.
    agent
        .request(
            json!({"type":"send","conversation_id":conversation,"body":"here","attachment_id":id}),
        )
        .await;
    assert_eq!(download(&gw, &vtoken, &id).await.bytes, PNG);
}

#[tokio::test]
async fn uploads_are_bounded_in_size_type_content_and_rate() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        dir.path(),
        &[
            ("CHAT_MAX_UPLOAD_BYTES", "1000"),
            ("CHAT_UPLOAD_TYPES", "image/png,text/plain"),
            ("CHAT_UPLOAD_RATE_PER_MIN", "1"),
            ("CHAT_UPLOAD_BURST", "3"),
        ],
    );
    let visitor = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    assert_eq!(visitor.welcome["uploads"]["max_bytes"], 1000);
    let token = token_of(&visitor);
    let too_large = upload(&gw, Some(&token), "", "image/png", &[0x89; 1001]).await;
    assert_eq!(
        (too_large.status, too_large.json()["error"].clone()),
        (413, json!("too_large"))
    );
    let exe = upload(
        &gw,
        Some(&token),
        "?name=a.exe",
        "application/x-msdownload",
        b"MZ",
    )
    .await;
    assert_eq!(
        (exe.status, exe.json()["error"].clone()),
        (415, json!("unsupported_type"))
    );
    assert!(
        exe.json()["message"]
            .as_str()
            .unwrap()
            .contains("CHAT_UPLOAD_TYPES"),
        "{}",
        exe.json()
    );
    let disguised = upload(
        &gw,
        Some(&token),
        "",
        "image/png",
        b"<script>alert(1)</script>",
    )
    .await;
    assert_eq!(disguised.status, 415, "{}", disguised.json());
    // The two refused for their type took tokens of the burst of three (the size was refused
    // from `Content-Length`, before the bucket): one more passes, the next waits.
    assert_eq!(
        upload(&gw, Some(&token), "", "text/plain", b"hi")
            .await
            .status,
        201
    );
    let limited = upload(&gw, Some(&token), "", "text/plain", b"hi").await;
    assert_eq!(limited.status, 429, "{}", limited.json());
    assert!(!limited.header("retry-after").is_empty());
    let metrics = common::metrics_text(&gw).await;
    for line in [
        "chat_upload_refused_total{reason=\"too_large\"} 1",
        "chat_upload_refused_total{reason=\"content_mismatch\"} 1",
        "chat_upload_refused_total{reason=\"rate_limited\"} 1",
        "chat_attachments_uploaded_total{role=\"visitor\"} 1",
    ] {
        assert!(metrics.contains(line), "no `{line}` in /metrics");
    }
}

#[tokio::test]
async fn one_address_is_limited_whatever_identities_it_mints() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        dir.path(),
        &[
            ("CHAT_UPLOAD_RATE_PER_MIN", "0"),
            ("CHAT_UPLOAD_RATE_PER_IP_PER_MIN", "2"),
        ],
    );
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        // A new visitor each time: a fresh token, the same address.
        let visitor = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
        let answer = upload(&gw, Some(&token_of(&visitor)), "", "text/plain", b"hi").await;
        statuses.push(answer.status);
        last = Some(answer);
    }
    assert_eq!(statuses, vec![201, 201, 429]);
    let limited = last.unwrap();
    assert!(
        limited.json()["message"]
            .as_str()
            .unwrap()
            .contains("CHAT_UPLOAD_RATE_PER_IP_PER_MIN"),
        "{}",
        limited.json()
    );
}

#[tokio::test]
async fn downloads_held_at_once_are_bounded() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        dir.path(),
        &[
            ("CHAT_MAX_UPLOAD_BYTES", "33554432"),
            ("CHAT_MAX_CONCURRENT_DOWNLOADS", "1"),
        ],
    );
    let mut visitor = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    let token = token_of(&visitor);
    // 24 MiB: more than loopback's socket buffers take, so a reader that reads nothing keeps
    // the download (and its bytes) held.
    let mut big = PNG.to_vec();
    big.resize(24 << 20, 0);
    let up = upload(&gw, Some(&token), "?name=big.png", "image/png", &big).await;
    assert_eq!(up.status, 201, "{}", up.json());
    let id = up.json()["attachment"]["id"].as_str().unwrap().to_string();
    visitor
        .request(json!({"type":"send","body":"","attachment_id":id}))
        .await;
    let mut stalled = common::tcp_from(&gw, "127.0.0.1").await;
    stalled
        .write_all(
            format!(
                "GET /chat/api/attachments/{id} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let refused = download(&gw, &token, &id).await;
    assert_eq!(
        (refused.status, refused.json()["error"].clone()),
        (503, json!("unavailable"))
    );
    assert!(refused.json()["message"]
        .as_str()
        .unwrap()
        .contains("CHAT_MAX_CONCURRENT_DOWNLOADS"));
    // The stalled reader leaves: the next download is served whole.
    drop(stalled);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let again = download(&gw, &token, &id).await;
        if again.status == 200 {
            assert_eq!(again.bytes.len(), big.len());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slot never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_signed_in_user_uploads_with_their_hash_never_with_the_token_alone() {
    use base64::Engine as _;
    const SECRET: &str = "identity-secret-attachments-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[("CHAT_IDENTITY_SECRET", SECRET)]);
    let hash = chat_core::identity::IdentitySecret::new(SECRET.as_bytes()).hash("u-42");
    let visitor = Client::connect(
        &gw.ws(&format!(
            "/ws-visitor/?user_id=u-42&user_name=Ann&user_hash={hash}"
        )),
        &[],
    )
    .await;
    let token = token_of(&visitor);
    // The token of a signed-in user opens nothing alone (as a session would not).
    let alone = upload(&gw, Some(&token), "", "image/png", PNG).await;
    assert_eq!(alone.status, 401, "{}", alone.json());
    let user = |hash: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(json!({"id":"u-42","name":"Ann","hash":hash}).to_string())
    };
    let post = |header: String| {
        reqwest::Client::new()
            .post(gw.http("/chat/api/attachments?name=p.png"))
            .bearer_auth(&token)
            .header("X-Chat-User", header)
            .header("Content-Type", "image/png")
            .body(PNG.to_vec())
    };
    assert_eq!(
        answer(post(user("0".repeat(64).as_str()))).await.status,
        401
    );
    assert_eq!(answer(post("not base64 json".into())).await.status, 401);
    let signed = answer(post(user(&hash))).await;
    assert_eq!(signed.status, 201, "{}", signed.json());
}

#[tokio::test]
async fn uploads_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[("CHAT_MAX_UPLOAD_BYTES", "0")]);
    let visitor = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    assert!(
        visitor.welcome.get("uploads").is_none(),
        "{}",
        visitor.welcome
    );
    let refused = upload(&gw, Some(&token_of(&visitor)), "", "image/png", PNG).await;
    assert_eq!(refused.status, 403);
}

#[tokio::test]
async fn the_upload_dir_keeps_the_bytes_as_private_files() {
    let dir = tempfile::tempdir().unwrap();
    let uploads = dir.path().join("uploads");
    let gw = Gateway::start(
        dir.path(),
        &[("CHAT_UPLOAD_DIR", uploads.to_str().unwrap())],
    );
    let mut visitor = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    let token = token_of(&visitor);
    let up = upload(&gw, Some(&token), "?name=p.png", "image/png", PNG).await;
    assert_eq!(up.status, 201, "{}", up.json());
    let id = up.json()["attachment"]["id"].as_str().unwrap().to_string();
    assert_eq!(std::fs::read(uploads.join(&id)).unwrap(), PNG);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(uploads.join(&id))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "readable by others: {mode:o}");
    }
    visitor
        .request(json!({"type":"send","body":"pic","attachment_id":id}))
        .await;
    assert_eq!(download(&gw, &token, &id).await.bytes, PNG);
}

#[tokio::test]
async fn uploads_no_message_carried_are_deleted_with_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let uploads = dir.path().join("uploads");
    let gw = Gateway::start(
        dir.path(),
        &[
            ("CHAT_UPLOAD_DIR", uploads.to_str().unwrap()),
            ("CHAT_UPLOAD_UNSENT_TTL_SECS", "1"),
        ],
    );
    let mut visitor = Client::connect(&gw.ws("/ws-visitor/"), &[]).await;
    let token = token_of(&visitor);
    let id_of = |a: &Answer| a.json()["attachment"]["id"].as_str().unwrap().to_string();
    let unsent = id_of(&upload(&gw, Some(&token), "", "image/png", PNG).await);
    let sent = id_of(&upload(&gw, Some(&token), "", "image/png", PNG).await);
    let ack = visitor
        .request(json!({"type":"send","body":"","attachment_id":sent}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    // Swept within a few seconds: the unsent one and its file go, the sent one stays.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while uploads.join(&unsent).exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(
        !uploads.join(&unsent).exists(),
        "the unsent upload's file is gone"
    );
    assert_eq!(download(&gw, &token, &unsent).await.status, 404);
    let late = visitor
        .request(json!({"type":"send","body":"","attachment_id":unsent}))
        .await;
    assert_eq!(late["code"], "not_found", "{late}");
    assert_eq!(download(&gw, &token, &sent).await.bytes, PNG);
    assert!(uploads.join(&sent).exists());
    assert!(
        common::metric(&gw, "chat_attachments_swept_total", &[]).await >= 1.0,
        "the sweep is counted"
    );
}

#[tokio::test]
async fn postgres_keeps_the_bytes_for_every_process() {
    let pg = TestPostgres::start();
    let url = pg.fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_gateways(&url, dir.path());
    let mut visitor = Client::connect(&a.ws("/ws-visitor/"), &[]).await;
    let token = token_of(&visitor);
    let up = upload(&a, Some(&token), "?name=p.png", "image/png", PNG).await;
    assert_eq!(up.status, 201, "{}", up.json());
    let attachment = up.json()["attachment"].clone();
    let id = attachment["id"].as_str().unwrap().to_string();
    let agent_token = b.agent_token("bob", "Bob");
    let mut agent = Client::connect(&b.ws(&format!("/ws-admin/?token={agent_token}")), &[]).await;
    agent.request(json!({"type":"resume","cursors":{}})).await;
    visitor
        .request(json!({"type":"send","client_msg_id":"pg1","body":"from a","attachment_id":id}))
        .await;
    let got = agent
        .wait_for(|e| e["type"] == "message" && e["message"]["client_msg_id"] == "pg1")
        .await;
    assert_eq!(got["message"]["attachment"], attachment, "{got}");
    assert_eq!(download(&b, &agent_token, &id).await.bytes, PNG);
    assert_eq!(download(&b, &token, &id).await.bytes, PNG);
}
