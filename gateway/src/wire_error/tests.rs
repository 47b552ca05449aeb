//! The mapping table of `wire_error.rs` against the documented statuses, codes and reasons.

use super::*;

fn rate() -> Refusal {
    Refusal::RateLimited {
        what: "x".into(),
        retry_after: Duration::from_millis(1500),
    }
}

fn every_refusal() -> Vec<Refusal> {
    vec![
        Refusal::TooManyConnections { limit: 2 },
        Refusal::TooManyFromAddress { limit: 2 },
        rate(),
        Refusal::ForbiddenOrigin {
            origin: "https://evil.example".into(),
            variable: "CHAT_ALLOWED_ORIGINS",
        },
        Refusal::Unauthorized("agent token expired".into()),
        Refusal::BadRequest("no upgrade".into()),
        Refusal::WebSocketVersion,
        Refusal::Unavailable("store down".into()),
        Refusal::Internal("bug".into()),
    ]
}

/// The table of `docs/protocol.md` ("Rejections") and `docs/metrics.md`
/// (`chat_handshake_failures_total`): status, code, metric reason, `Retry-After`.
#[test]
fn every_refusal_maps_to_its_documented_status_code_and_reason() {
    let expected = [
        (503, "unavailable", "too_many_connections", Some("5")),
        (429, "too_many_connections", "too_many_from_address", None),
        (429, "rate_limited", "rate_limited", Some("2")),
        (403, "forbidden", "forbidden_origin", None),
        (401, "unauthorized", "unauthorized", None),
        (400, "bad_request", "bad_request", None),
        (426, "bad_request", "bad_request", None),
        (503, "unavailable", "unavailable", None),
        (500, "internal", "internal", None),
    ];
    for (refusal, (status, code, reason, retry)) in every_refusal().iter().zip(expected) {
        let answer = refusal.error_response();
        assert_eq!(answer.status(), status, "{refusal:?}");
        assert_eq!(answer.body()["error"], code, "{refusal:?}");
        assert_eq!(answer.body()["message"], refusal.to_string());
        assert_eq!(refusal.metric_reason().as_str(), reason, "{refusal:?}");
        let retry_header = answer
            .headers()
            .into_iter()
            .find(|(name, _)| *name == "Retry-After")
            .map(|(_, value)| value);
        assert_eq!(retry_header.as_deref(), retry, "{refusal:?}");
        assert_eq!(
            answer.body().get("retry_after_ms").is_some(),
            retry.is_some()
        );
        assert_eq!(refusal.socketio_message(), refusal.to_string());
    }
    assert_eq!(rate().error_response().body()["retry_after_ms"], 1500);
    assert_eq!(
        Refusal::WebSocketVersion.error_response().headers(),
        vec![("Sec-WebSocket-Version", "13".to_string())]
    );
    assert!(Refusal::ForbiddenOrigin {
        origin: "https://evil.example".into(),
        variable: "CHAT_ALLOWED_ORIGINS"
    }
    .socketio_message()
    .contains("CHAT_ALLOWED_ORIGINS"));
}

#[test]
fn engine_io_refusals_carry_the_engine_code_and_the_chat_code() {
    for refusal in every_refusal() {
        let answer = refusal.engine_response();
        assert_eq!(answer.status, refusal.status());
        let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        let engine_code = if refusal.status() == 403 { 4 } else { 3 };
        assert_eq!(body["code"], engine_code, "{refusal:?}");
        assert_eq!(body["error"], refusal.code());
        assert_eq!(body["reason"], refusal.to_string());
    }
    let body = rate().engine_response().body;
    assert_eq!(
        std::str::from_utf8(&body).unwrap(),
        r#"{"code":3,"error":"rate_limited","message":"Too Many Requests","reason":"x; retry in 1500 ms","retry_after_ms":1500}"#
    );
    // The engine's own refusals are counted by their status.
    for (status, reason) in [
        (400, "bad_request"),
        (401, "unauthorized"),
        (403, "forbidden_origin"),
        (413, "bad_request"),
        (426, "bad_request"),
        (429, "rate_limited"),
        (500, "internal"),
        (503, "unavailable"),
    ] {
        assert_eq!(engine_refusal_reason(status).as_str(), reason, "{status}");
    }
}

/// `docs/protocol.md` ("Error codes") and `docs/http-api.md`: every chat code's status.
#[test]
fn every_chat_error_code_has_one_status() {
    use ErrorCode::*;
    let table = [
        (MalformedJson, 400),
        (UnknownType, 400),
        (InvalidFrame, 400),
        (BadRequest, 400),
        (Unauthorized, 401),
        (TokenExpired, 401),
        (Forbidden, 403),
        (NotFound, 404),
        (TooLarge, 413),
        (RateLimited, 429),
        (Unavailable, 503),
        (Internal, 500),
    ];
    for (code, status) in table {
        assert_eq!(http_status(code), status, "{code:?}");
        assert_eq!(
            ErrorResponse::chat(code, "m").body()["error"],
            code.as_str()
        );
    }
    let store_down = ChatError::Store(chat_core::StoreError::Unavailable("pool".into()));
    let answer = store_down.error_response();
    assert_eq!(answer.status(), 503);
    assert_eq!(answer.body()["message"], store_down.client_message());
    let missing = ChatError::NotFound("conversation x does not exist".into());
    assert_eq!(missing.error_response().status(), 404);
    let limited = ChatError::RateLimited {
        what: "sending too fast".into(),
        retry_after: Duration::from_millis(300),
    };
    assert_eq!(limited.error_response().status(), 429);
    assert_eq!(limited.error_response().body()["retry_after_ms"], 300);
    assert_eq!(ErrorResponse::method_not_allowed("use GET").status(), 405);
}

/// The polling transport keeps its own tiny body builder (it cannot depend on the
/// gateway): it writes the same bytes as [`error_body`].
#[test]
fn the_polling_transport_builds_the_same_error_body() {
    for (status, code, message) in [
        (410, "session_expired", "unknown or expired polling session"),
        (413, "too_large", "body over 65536 bytes \"quoted\" \u{e9}"),
    ] {
        let polling = PollResponse::error(status, code, message);
        assert_eq!(polling.body, error_body(code, message, None).to_string());
    }
    let ours: PollResponse = ErrorResponse::chat(ErrorCode::Forbidden, "not yours").into();
    assert_eq!(
        ours,
        PollResponse::error(403, "forbidden", "not yours"),
        "a gateway error written over long-polling is what the transport writes"
    );
}

#[test]
fn connection_caps_answer_503_with_the_reason_as_code() {
    let answer = ConnectionRefusal::TooManyFromAddress.http1_answer(10, 2);
    assert!(answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
    assert!(answer.contains("\r\nRetry-After: 5\r\n"));
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    assert_eq!(
        body,
        r#"{"error":"too_many_from_address","message":"too many connections from this address (2, CHAT_MAX_HTTP_CONNECTIONS_PER_IP); close idle ones first"}"#
    );
    assert_eq!(
        ConnectionRefusal::TooManyConnections.as_str(),
        "too_many_connections"
    );
}
