//! Conformance checks of the webhook outbox (`chat_core::webhook`): events written with their
//! facts, claimed with a lease, retried, finished and given up on, run against every store by
//! `conformance_suite!`.

use super::*;
use chat_core::model::Sites;
use chat_core::webhook::{OutboxDepth, WebhookEvent, WebhookEventKind, WebhookOutbox};

const LEASE: Duration = Duration::from_secs(60);

fn outbox_for(site: &str) -> Arc<WebhookOutbox> {
    WebhookOutbox::new(Sites::only([site.to_string()]).expect("one site"))
}

async fn claim_all<S: Store>(store: &S) -> Vec<WebhookEvent> {
    store
        .claim_webhook_events(100, LEASE)
        .await
        .expect("claim_webhook_events")
}

fn kinds(events: &[WebhookEvent]) -> Vec<&'static str> {
    events
        .iter()
        .map(|e| e.kind.expect("a known kind").as_str())
        .collect()
}

fn body(event: &WebhookEvent) -> serde_json::Value {
    serde_json::from_str(&event.payload).expect("the payload is JSON")
}

async fn depth<S: Store>(store: &S) -> OutboxDepth {
    store
        .webhook_outbox_depth()
        .await
        .expect("webhook_outbox_depth")
}

pub async fn webhook_events_are_written_with_their_facts<F: Fixture>(fx: &F) {
    let site = unique("hooked");
    let store = fx.open_with_outbox(outbox_for(&site)).await;
    let c = conversation(&store, &site).await;
    let m = inserted(append(&store, visitor_message(&c, Some("k1"), "hello")).await);
    // A retry of the same message is no new fact.
    append(&store, visitor_message(&c, Some("k1"), "hello")).await;
    tick().await;
    store.assign(c.id, Some(&agent())).await.expect("assign");
    // The same assignee again changes nothing: no event.
    store
        .assign(c.id, Some(&agent()))
        .await
        .expect("assign again");
    let closed = store
        .set_status(c.id, ConversationStatus::Closed)
        .await
        .expect("close");
    store
        .set_status(c.id, ConversationStatus::Closed)
        .await
        .expect("close again");
    store
        .set_status(c.id, ConversationStatus::Open)
        .await
        .expect("reopen");
    store.assign(c.id, None).await.expect("unassign");

    // A site without a webhook gets no event for the same facts.
    let quiet = conversation(&store, "site-without-hook").await;
    append(&store, visitor_message(&quiet, None, "not reported")).await;
    store
        .assign(quiet.id, Some(&agent()))
        .await
        .expect("assign");
    store
        .set_status(quiet.id, ConversationStatus::Closed)
        .await
        .expect("close");

    assert_eq!(
        depth(&store).await,
        OutboxDepth {
            pending: 5,
            dead: 0
        }
    );
    let events = claim_all(&store).await;
    assert_eq!(
        kinds(&events),
        vec![
            "conversation.created",
            "message.created",
            "conversation.assigned",
            "conversation.closed",
            "conversation.assigned",
        ],
        "in the order of their facts"
    );
    for event in &events {
        let body = body(event);
        assert_eq!(event.site_id, site);
        assert_eq!(event.conversation_id, c.id);
        assert_eq!(event.attempts, 1, "claimed once");
        assert_eq!(
            body["id"],
            event.id.to_string(),
            "the payload carries the id"
        );
        assert_eq!(body["type"], event.kind.unwrap().as_str());
        assert_eq!(body["site_id"], site);
    }
    let ids: BTreeSet<_> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), events.len(), "every event has its own id");

    let created = body(&events[0]);
    assert_eq!(created["data"]["conversation"]["id"], c.id.to_string());
    assert_eq!(created["data"]["conversation"]["status"], "open");
    let message = body(&events[1]);
    assert_eq!(message["data"]["message"]["seq"], m.seq);
    assert_eq!(message["data"]["message"]["body"], "hello");
    assert_eq!(message["data"]["message"]["client_msg_id"], "k1");
    assert_eq!(message["data"]["visitor_id"], c.visitor_id.to_string());
    let assigned = body(&events[2]);
    assert_eq!(
        assigned["data"]["conversation"]["assignee"]["id"],
        agent().id
    );
    let closed_event = body(&events[3]);
    assert_eq!(closed_event["data"]["conversation"]["status"], "closed");
    assert_eq!(
        events[3].created_at, closed.updated_at,
        "a conversation event is dated by its fact"
    );
    assert!(body(&events[4])["data"]["conversation"]["assignee"].is_null());
}

pub async fn webhook_events_of_batched_appends_are_written_with_them<F: Fixture>(fx: &F) {
    let site = unique("hooked");
    let store = Arc::new(fx.open_with_outbox(outbox_for(&site)).await);
    let hooked = conversation(&*store, &site).await;
    let quiet = conversation(&*store, "site-without-hook").await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = store.clone();
        let c = if i % 2 == 0 { &hooked } else { &quiet }.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("m{i}");
            store
                .append_message(visitor_message(&c, Some(&key), &key))
                .await
                .expect("append")
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let events = claim_all(&*store).await;
    let messages: Vec<&WebhookEvent> = events
        .iter()
        .filter(|e| e.kind == Some(WebhookEventKind::MessageCreated))
        .collect();
    assert_eq!(messages.len(), 20, "one per message of the hooked site");
    let mut seqs: Vec<i64> = messages
        .iter()
        .map(|e| body(e)["data"]["message"]["seq"].as_i64().expect("seq"))
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "one conversation's events in commit order: {seqs:?}"
    );
    seqs.dedup();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
}

pub async fn webhook_events_are_leased_retried_finished_and_given_up<F: Fixture>(fx: &F) {
    let site = unique("hooked");
    let store = fx.open_with_outbox(outbox_for(&site)).await;
    for _ in 0..3 {
        conversation(&store, &site).await;
    }
    let first = store.claim_webhook_events(2, LEASE).await.expect("claim");
    assert_eq!(first.len(), 2, "at most the limit");
    let second = claim_all(&store).await;
    assert_eq!(second.len(), 1, "the rest");
    assert!(
        claim_all(&store).await.is_empty(),
        "claimed events are leased"
    );
    let (a, b, c) = (&first[0], &first[1], &second[0]);

    // A failed attempt is due again after its delay, with one more attempt counted.
    store
        .webhook_event_failed(a.id, a.attempts, Some(Duration::ZERO), "HTTP 500")
        .await
        .expect("failed");
    let retried = claim_all(&store).await;
    assert_eq!(retried.len(), 1);
    assert_eq!(
        (retried[0].id, retried[0].attempts, &retried[0].payload),
        (a.id, 2, &a.payload),
        "the same event, the same body"
    );
    // A stale worker's report (of attempt 1) does not undo attempt 2's lease.
    store
        .webhook_event_failed(a.id, 1, Some(Duration::ZERO), "late")
        .await
        .expect("stale failure");
    assert!(claim_all(&store).await.is_empty());
    // A delay not over yet keeps it back.
    store
        .webhook_event_failed(a.id, 2, Some(Duration::from_secs(3600)), "timed out")
        .await
        .expect("failed");
    assert!(claim_all(&store).await.is_empty());

    store
        .webhook_event_delivered(b.id)
        .await
        .expect("delivered");
    store
        .webhook_event_failed(c.id, c.attempts, None, &"x".repeat(10_000))
        .await
        .expect("dead");
    assert_eq!(
        depth(&store).await,
        OutboxDepth {
            pending: 1,
            dead: 1
        },
        "delivered: gone; dead: kept; a: waiting for its retry"
    );

    // A lease that ends (its worker died) makes the event due again, for another process too.
    let d = conversation(&store, &site).await;
    let leased = store
        .claim_webhook_events(10, Duration::from_millis(50))
        .await
        .expect("claim");
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].conversation_id, d.id);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let restarted = fx.open().await;
    let again = claim_all(&restarted).await;
    assert_eq!(again.len(), 1, "the lease ended");
    assert_eq!((again[0].id, again[0].attempts), (leased[0].id, 2));
    restarted
        .webhook_event_delivered(again[0].id)
        .await
        .expect("delivered");
    assert_eq!(
        depth(&restarted).await,
        OutboxDepth {
            pending: 1,
            dead: 1
        }
    );
}

pub async fn concurrent_webhook_claims_never_share_an_event<F: Fixture>(fx: &F) {
    let site = unique("hooked");
    let store = fx.open_with_outbox(outbox_for(&site)).await;
    for _ in 0..30 {
        conversation(&store, &site).await;
    }
    // Two store instances, as two gateway processes would have.
    let stores = [Arc::new(store), Arc::new(fx.open().await)];
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = stores[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            let mut claimed = Vec::new();
            loop {
                let batch = store.claim_webhook_events(3, LEASE).await.expect("claim");
                if batch.is_empty() {
                    return claimed;
                }
                claimed.extend(batch.into_iter().map(|e| e.id));
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("task"));
    }
    let distinct: BTreeSet<_> = all.iter().collect();
    assert_eq!(all.len(), 30, "every event claimed");
    assert_eq!(distinct.len(), 30, "none twice");
}

pub async fn a_store_without_an_outbox_writes_no_webhook_event<F: Fixture>(fx: &F) {
    let store = fx.open().await;
    let c = conversation(&store, "site-a").await;
    append(&store, visitor_message(&c, None, "hi")).await;
    store.assign(c.id, Some(&agent())).await.expect("assign");
    store
        .set_status(c.id, ConversationStatus::Closed)
        .await
        .expect("close");
    assert_eq!(depth(&store).await, OutboxDepth::default());
    assert!(claim_all(&store).await.is_empty());
}
