//! Conformance checks of canned responses (issue 15), run against every store by
//! `conformance_suite!`.

use super::*;
use chat_core::canned::{CannedFields, CannedResponse, CannedWrite};

fn fields(shortcut: &str, body: &str) -> CannedFields {
    CannedFields {
        shortcut: shortcut.into(),
        title: format!("Title of {shortcut}"),
        body: body.into(),
    }
}

fn stored(write: CannedWrite) -> CannedResponse {
    match write {
        CannedWrite::Stored(canned) => canned,
        other => panic!("expected Stored, got {other:?}"),
    }
}

pub async fn canned_responses_crud_per_site<F: Fixture>(fx: &F) {
    let store = fx.open().await;
    let site = unique("site-c");
    let other = unique("site-d");
    let greet = stored(
        store
            .create_canned_response(&site, &fields("greet", "Hi {{visitor.name}}!"), 10)
            .await
            .unwrap(),
    );
    assert_eq!(
        (
            greet.site_id.as_str(),
            greet.shortcut.as_str(),
            greet.body.as_str()
        ),
        (site.as_str(), "greet", "Hi {{visitor.name}}!")
    );
    let bye = stored(
        store
            .create_canned_response(&site, &fields("bye", "Bye"), 10)
            .await
            .unwrap(),
    );
    // The same shortcut on another site is another response; on the same site it is taken.
    stored(
        store
            .create_canned_response(&other, &fields("greet", "Hello"), 10)
            .await
            .unwrap(),
    );
    assert_eq!(
        store
            .create_canned_response(&site, &fields("greet", "again"), 10)
            .await
            .unwrap(),
        CannedWrite::ShortcutTaken
    );
    let listed = store.canned_responses(&site).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|c| c.shortcut.as_str())
            .collect::<Vec<_>>(),
        ["bye", "greet"],
        "by shortcut, only the site's"
    );
    assert_eq!(
        store.canned_response(greet.id).await.unwrap(),
        Some(greet.clone())
    );

    tick().await;
    let changed = stored(
        store
            .update_canned_response(greet.id, &fields("hello", "Hello {{agent.name}}"))
            .await
            .unwrap(),
    );
    assert_eq!(
        (changed.id, changed.site_id.as_str()),
        (greet.id, site.as_str())
    );
    assert_eq!(changed.shortcut, "hello");
    assert_eq!(changed.created_at, greet.created_at);
    assert!(changed.updated_at > greet.updated_at);
    assert_eq!(
        store
            .update_canned_response(greet.id, &fields("bye", "x"))
            .await
            .unwrap(),
        CannedWrite::ShortcutTaken,
        "another response of the site has it"
    );
    assert!(matches!(
        store
            .update_canned_response(uuid::Uuid::new_v4(), &fields("zz", "x"))
            .await,
        Err(StoreError::NotFound(_))
    ));

    assert!(store.delete_canned_response(bye.id).await.unwrap());
    assert!(!store.delete_canned_response(bye.id).await.unwrap());
    assert_eq!(store.canned_response(bye.id).await.unwrap(), None);
    let reopened = fx.open().await;
    assert_eq!(
        reopened.canned_responses(&site).await.unwrap(),
        vec![changed],
        "durable"
    );
}

pub async fn canned_responses_stop_at_the_site_limit<F: Fixture>(fx: &F) {
    let store = Arc::new(fx.open().await);
    let site = unique("site-l");
    // Concurrent creates cannot pass the limit together.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            let site = site.clone();
            tokio::spawn(async move {
                store
                    .create_canned_response(&site, &fields(&format!("r{i}"), "x"), 5)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        match task.await.unwrap() {
            CannedWrite::Stored(_) => created += 1,
            CannedWrite::LimitReached => {}
            CannedWrite::ShortcutTaken => panic!("shortcuts were distinct"),
        }
    }
    assert_eq!(created, 5);
    assert_eq!(store.canned_responses(&site).await.unwrap().len(), 5);
    // Another site has its own count.
    stored(
        store
            .create_canned_response(&unique("site-m"), &fields("r0", "x"), 5)
            .await
            .unwrap(),
    );
}
