//! Conformance checks of conversation search (issue 15), run against every store by
//! `conformance_suite!`.

use super::*;
use chat_core::model::VisitorProfile;
use chat_core::search::{SearchCursor, SearchQuery, SearchText, StoredHit};

fn query(site: Option<&str>, text: &str) -> SearchQuery {
    SearchQuery {
        sites: site.map(|s| vec![s.to_string()]),
        status: None,
        text: SearchText::parse(text).expect("a searchable query"),
        after: None,
        limit: 50,
    }
}

async fn search<S: Store>(store: &S, q: &SearchQuery) -> Vec<StoredHit> {
    store.search_conversations(q).await.expect("search")
}

fn ids(hits: &[StoredHit]) -> Vec<ConversationId> {
    hits.iter().map(|h| h.conversation.id).collect()
}

/// Site A: `late` (two messages, the second with "refund"), `ann` (a named visitor),
/// `closed` (closed, mentions a refund), `chinese`; site B: `elsewhere` (mentions a refund).
struct Data {
    site: String,
    late: Conversation,
    ann: Conversation,
    closed: Conversation,
    chinese: Conversation,
    elsewhere: Conversation,
}

async fn data<S: Store>(store: &S) -> Data {
    let site = unique("site-s");
    let late = conversation(store, &site).await;
    append(store, visitor_message(&late, None, "My order arrived late")).await;
    tick().await;
    let refund = append(store, agent_message(&late, None, "Can I offer a Refund?")).await;
    assert_eq!(refund.message().seq, 2);
    tick().await;

    let named = store
        .ensure_visitor(&Visitor {
            id: VisitorId::new_random(),
            site_id: site.clone(),
            created_at: Utc::now(),
            profile: Some(VisitorProfile {
                user_id: Some("u-9".into()),
                name: Some("Ann Lee".into()),
                email: Some("ann.lee@example.com".into()),
                verified: true,
            }),
        })
        .await
        .unwrap();
    let ann = store.create_conversation(&site, named.id).await.unwrap();
    append(store, visitor_message(&ann, None, "hello there")).await;
    tick().await;

    let closed = conversation(store, &site).await;
    append(
        store,
        visitor_message(&closed, None, "refund processed, thanks"),
    )
    .await;
    store
        .set_status(closed.id, ConversationStatus::Closed)
        .await
        .unwrap();
    tick().await;

    let chinese = conversation(store, &site).await;
    append(store, visitor_message(&chinese, None, "我想要退款，谢谢")).await;
    tick().await;

    let elsewhere = conversation(store, &unique("site-t")).await;
    append(store, visitor_message(&elsewhere, None, "refund me")).await;
    Data {
        late: get(store, late.id).await,
        ann: get(store, ann.id).await,
        closed: get(store, closed.id).await,
        chinese: get(store, chinese.id).await,
        elsewhere: get(store, elsewhere.id).await,
        site,
    }
}

pub async fn search_finds_text_people_and_status_within_sites<F: Fixture>(fx: &F) {
    let store = fx.open().await;
    let d = data(&store).await;
    let site = Some(d.site.as_str());

    // Words: case-insensitive, each a prefix, most recently updated first, with the newest
    // matching message; only the site's.
    let hits = search(&store, &query(site, "REFUND")).await;
    assert_eq!(ids(&hits), [d.closed.id, d.late.id]);
    let message = hits[1].message.as_ref().expect("the matching message");
    assert_eq!(
        (message.seq, message.body.as_str()),
        (2, "Can I offer a Refund?")
    );
    assert_eq!(
        ids(&search(&store, &query(site, "refu")).await),
        [d.closed.id, d.late.id]
    );
    // Every word in one message.
    assert_eq!(
        ids(&search(&store, &query(site, "order late")).await),
        [d.late.id]
    );
    assert!(search(&store, &query(site, "late refund")).await.is_empty());
    // Every site when none is named.
    let everywhere = ids(&search(&store, &query(None, "refund")).await);
    assert!(everywhere.contains(&d.elsewhere.id) && everywhere.contains(&d.late.id));

    // The visitor's name or email, anywhere in it, without a matching message.
    for text in ["ann lee", "Lee", "ANN.LEE@EXAMPLE", "example.com"] {
        let hits = search(&store, &query(site, text)).await;
        assert_eq!(ids(&hits), [d.ann.id], "{text}");
        assert_eq!(hits[0].message, None);
    }

    // Status.
    let mut closed = query(site, "refund");
    closed.status = Some(ConversationStatus::Closed);
    assert_eq!(ids(&search(&store, &closed).await), [d.closed.id]);
    closed.status = Some(ConversationStatus::Open);
    assert_eq!(ids(&search(&store, &closed).await), [d.late.id]);

    // CJK words match as substrings.
    for text in ["退款", "想要退款", "谢谢"] {
        let hits = search(&store, &query(site, text)).await;
        assert_eq!(ids(&hits), [d.chinese.id], "{text}");
        assert_eq!(hits[0].message.as_ref().unwrap().body, "我想要退款，谢谢");
    }
    assert!(search(&store, &query(site, "退货")).await.is_empty());
}

pub async fn search_pages_with_a_cursor<F: Fixture>(fx: &F) {
    let store = fx.open().await;
    let d = data(&store).await;
    let mut q = query(Some(&d.site), "refund");
    q.limit = 1;
    let first = search(&store, &q).await;
    assert_eq!(ids(&first), [d.closed.id]);
    q.after = Some(SearchCursor::after(&first[0].conversation));
    let second = search(&store, &q).await;
    assert_eq!(ids(&second), [d.late.id]);
    q.after = Some(SearchCursor::after(&second[0].conversation));
    assert!(search(&store, &q).await.is_empty());
    let _ = (d.ann, d.chinese, d.elsewhere);
}

pub async fn search_treats_hostile_queries_as_plain_words<F: Fixture>(fx: &F) {
    let store = fx.open().await;
    let d = data(&store).await;
    let site = Some(d.site.as_str());
    // Operators and quotes of either syntax are only separators: the words still match.
    for text in [
        r#""refund""#,
        "refund*",
        "refund:*",
        "(refund)",
        "refund & !",
        "refund'",
        r"refund\",
    ] {
        assert_eq!(
            ids(&search(&store, &query(site, text)).await),
            [d.closed.id, d.late.id],
            "{text}"
        );
    }
    // Injections find nothing and break nothing.
    for text in [
        "'); DROP TABLE messages; --",
        r#"" OR 1=1 --"#,
        "refund OR x",
        "x | refund",
        "^refund$ NOT",
        "NEAR(refund late)",
        "ann%",
        "a_n lee",
    ] {
        assert!(
            search(&store, &query(site, text)).await.is_empty(),
            "{text}"
        );
    }
    assert_eq!(
        search(&store, &query(site, "refund")).await.len(),
        2,
        "tables intact"
    );
    let _ = (d.ann, d.chinese, d.elsewhere);
}
