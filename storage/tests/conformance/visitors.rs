//! Conformance checks of visitor profiles and `Store::move_conversation` (issue 13: known
//! visitors), run against every store by `conformance_suite!`.

use super::*;
use chat_core::model::VisitorProfile;

fn profile(name: &str, verified: bool) -> Option<VisitorProfile> {
    Some(VisitorProfile {
        user_id: Some("u-1".into()),
        name: Some(name.into()),
        email: Some(format!("{}@example.com", name.to_lowercase())),
        verified,
    })
}

fn with_profile(v: &Visitor, profile: Option<VisitorProfile>) -> Visitor {
    Visitor {
        profile,
        created_at: Utc::now(),
        ..v.clone()
    }
}

pub async fn visitor_profiles_are_stored_and_never_downgraded<F: Fixture>(fx: &F) {
    let store = fx.open().await;
    let v = visitor(&store, "site-p").await;
    assert_eq!(v.profile, None);
    assert_eq!(store.visitor(v.id).await.unwrap(), Some(v.clone()));
    assert_eq!(store.visitor(VisitorId::new_random()).await.unwrap(), None);

    let unverified = store
        .ensure_visitor(&with_profile(&v, profile("Ann", false)))
        .await
        .unwrap();
    assert_eq!(
        unverified.profile,
        profile("Ann", false),
        "set on an existing row"
    );
    assert_eq!(unverified.created_at, v.created_at, "created_at kept");
    let verified = store
        .ensure_visitor(&with_profile(&v, profile("Bea", true)))
        .await
        .unwrap();
    assert_eq!(
        verified.profile,
        profile("Bea", true),
        "verified replaces unverified"
    );
    let kept = store
        .ensure_visitor(&with_profile(&v, profile("Mallory", false)))
        .await
        .unwrap();
    assert_eq!(
        kept.profile,
        profile("Bea", true),
        "unverified never replaces verified"
    );
    let kept = store.ensure_visitor(&with_profile(&v, None)).await.unwrap();
    assert_eq!(kept.profile, profile("Bea", true), "no profile given: kept");
    let renamed = store
        .ensure_visitor(&with_profile(&v, profile("Bea B", true)))
        .await
        .unwrap();
    assert_eq!(
        renamed.profile,
        profile("Bea B", true),
        "verified replaces verified"
    );
    assert_eq!(store.visitor(v.id).await.unwrap(), Some(renamed));

    let fresh = store
        .ensure_visitor(&Visitor {
            id: VisitorId::new_random(),
            site_id: "site-p".into(),
            created_at: Utc::now(),
            profile: profile("Cy", true),
        })
        .await
        .unwrap();
    assert_eq!(
        fresh.profile,
        profile("Cy", true),
        "inserted with its profile"
    );
}

pub async fn move_conversation_hands_it_to_a_visitor_of_the_same_site<F: Fixture>(fx: &F) {
    let store = fx.open().await;
    let c = conversation(&store, "site-m").await;
    inserted(append(&store, visitor_message(&c, Some("m1"), "before login")).await);
    let user = visitor(&store, "site-m").await;
    tick().await;
    let moved = store.move_conversation(c.id, user.id).await.unwrap();
    assert_eq!(moved.visitor_id, user.id);
    assert_eq!(
        (moved.id, moved.last_seq, moved.status),
        (c.id, 1, c.status)
    );
    assert!(moved.updated_at > c.updated_at);
    assert_eq!(get(&store, c.id).await, moved);
    assert_eq!(
        store.open_conversation_of("site-m", user.id).await.unwrap(),
        Some(moved.clone())
    );
    assert_eq!(
        store
            .open_conversation_of("site-m", c.visitor_id)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.messages_after(c.id, 0, 10).await.unwrap().len(),
        1,
        "messages stay"
    );

    let elsewhere = visitor(&store, "site-other").await;
    assert!(
        matches!(
            store.move_conversation(c.id, elsewhere.id).await,
            Err(StoreError::NotFound(_))
        ),
        "never to another site's visitor"
    );
    assert!(matches!(
        store
            .move_conversation(ConversationId::new_random(), user.id)
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(get(&store, c.id).await.visitor_id, user.id);
}
