//! Conformance checks of `Store::put_visitor_context` and `Store::visitor_context` (the
//! `context` and `visitor` commands), run against every store by `conformance_suite!`.

use super::*;
use chat_core::visitor_context::{ReportedContext, VisitorContextRecord};
use chrono::TimeZone;

fn at(second: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + second, 123_456_000)
        .single()
        .expect("valid time")
}

fn record(visitor_id: VisitorId, url: &str, second: i64) -> VisitorContextRecord {
    let mut context = ReportedContext {
        url: Some(url.into()),
        title: Some("Ünïcode title".into()),
        language: Some("fr-CA".into()),
        time_zone: Some("Europe/Paris".into()),
        ..ReportedContext::default()
    };
    context
        .attributes
        .insert("plan".into(), serde_json::json!("pro"));
    context
        .attributes
        .insert("seats".into(), serde_json::json!(3));
    context
        .attributes
        .insert("trial".into(), serde_json::json!(false));
    VisitorContextRecord {
        visitor_id,
        context,
        ip: Some("203.0.113.7".into()),
        country: Some("FR".into()),
        first_seen_at: at(second),
        updated_at: at(second),
    }
}

pub async fn visitor_context_latest_wins_and_keeps_first_seen<F: Fixture>(fx: &F) {
    let store = fx.open().await;
    let v = visitor(&store, "site-a").await;
    assert_eq!(store.visitor_context(v.id).await.unwrap(), None);
    let first = record(v.id, "https://a.example/one", 0);
    assert!(store.put_visitor_context(&first).await.unwrap());
    assert_eq!(
        store.visitor_context(v.id).await.unwrap(),
        Some(first.clone())
    );

    let mut second = record(v.id, "https://a.example/two", 10);
    second.ip = None;
    second.country = None;
    second.context.attributes.clear();
    assert!(store.put_visitor_context(&second).await.unwrap());
    let stored = store.visitor_context(v.id).await.unwrap().expect("stored");
    assert_eq!(stored.context, second.context, "the latest report, whole");
    assert_eq!((stored.ip, stored.country), (None, None));
    assert_eq!(stored.updated_at, at(10));
    assert_eq!(stored.first_seen_at, at(0), "first seen is kept");

    // A later session's first report does not move first seen forward.
    let third = record(v.id, "https://a.example/three", 20);
    assert!(store.put_visitor_context(&third).await.unwrap());
    assert_eq!(
        store
            .visitor_context(v.id)
            .await
            .unwrap()
            .unwrap()
            .first_seen_at,
        at(0)
    );

    // Another visitor's context is their own, and survives reopening.
    let other = visitor(&store, "site-b").await;
    assert_eq!(store.visitor_context(other.id).await.unwrap(), None);
    drop(store);
    let store = fx.open().await;
    assert_eq!(
        store.visitor_context(v.id).await.unwrap().unwrap().context,
        third.context
    );
}

pub async fn visitor_context_of_an_unknown_visitor_is_not_stored<F: Fixture>(fx: &F) {
    let store = fx.open().await;
    let ghost = VisitorId::new_random();
    assert!(!store
        .put_visitor_context(&record(ghost, "https://a.example/", 0))
        .await
        .unwrap());
    assert_eq!(store.visitor_context(ghost).await.unwrap(), None);
}
