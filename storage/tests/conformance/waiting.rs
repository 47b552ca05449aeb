//! Conformance checks of `Store::set_waiting` (offline capture: a conversation whose visitor
//! wrote while no agent was online), run against every store by `conformance_suite!`.

use super::*;

pub async fn waiting_is_set_kept_and_cleared<F: Fixture>(fx: &F) {
    let store = fx.open().await;
    let c = conversation(&store, "site-w").await;
    assert!(!c.waiting, "a new conversation is not waiting");
    let other = conversation(&store, "site-w").await;

    tick().await;
    let set = store.set_waiting(c.id, true).await.expect("set_waiting");
    assert!(set.waiting);
    assert!(set.updated_at > c.updated_at, "marking is a change");
    assert_eq!(set.status, ConversationStatus::Open);
    assert_eq!(set.last_seq, c.last_seq);

    // Kept across a message, an assignment, a reopened store; read back everywhere.
    store
        .append_message(visitor_message(&c, Some("w1"), "anyone?"))
        .await
        .expect("append");
    let reopened = fx.open().await;
    assert!(get(&reopened, c.id).await.waiting);
    assert!(!get(&reopened, other.id).await.waiting, "only that one");
    let listed = reopened
        .list_conversations(&ConversationFilter {
            sites: Some(vec!["site-w".into()]),
            status: None,
            limit: 10,
        })
        .await
        .expect("list");
    let marks: Vec<(ConversationId, bool)> = listed.iter().map(|c| (c.id, c.waiting)).collect();
    assert!(marks.contains(&(c.id, true)) && marks.contains(&(other.id, false)));

    let cleared = reopened.set_waiting(c.id, false).await.expect("clear");
    assert!(!cleared.waiting);
    assert!(!get(&store, c.id).await.waiting);

    match store.set_waiting(ConversationId::new_random(), true).await {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}
