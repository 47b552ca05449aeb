//! Conversation search (issue 15): what a query means, what a store is asked and answers, the
//! snippet shown with a hit and the paging cursor. `docs/protocol.md` (`search_conversations`)
//! says what matches.
//!
//! A query is never handed to a database's query language: it is cut into words at every
//! character that is not a letter or digit, so operators, quotes and wildcards of any syntax
//! are only separators. A word with a CJK character (Chinese, Japanese, Korean have no spaces
//! between words) matches as a substring; any other word as the start of a word of the message
//! (full-text search, case-insensitive). The whole query also matches the visitor's name or
//! email as a case-insensitive substring.
//!
//! ```
//! use chat_core::search::SearchText;
//! let text = SearchText::parse("refund 'OR 1=1 -- 退款").unwrap();
//! assert_eq!(text.words, ["refund", "or", "1", "1"]);
//! assert_eq!(text.substrings, ["退款"]);
//! ```

use crate::model::{Conversation, ConversationId, ConversationStatus, Message, SiteId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Longest query, in bytes.
pub const MAX_QUERY_BYTES: usize = 200;
/// Most words a query is cut into; the rest are ignored.
pub const MAX_WORDS: usize = 8;
/// Longest snippet, in characters (an ellipsis marks a cut end).
pub const SNIPPET_CHARS: usize = 160;
/// Longest `cursor` accepted, in bytes.
pub const MAX_CURSOR_BYTES: usize = 100;

/// A query, cut into what each store matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchText {
    /// Lower-cased words without a CJK character: each matches the start of a word of a
    /// message (full-text search).
    pub words: Vec<String>,
    /// Lower-cased words with a CJK character: each matches anywhere in a message.
    pub substrings: Vec<String>,
    /// The query, trimmed: matches anywhere in the visitor's name or email.
    pub whole: String,
}

impl SearchText {
    /// Cuts `query` into words; the error says why it cannot be searched (too long, no word).
    pub fn parse(query: &str) -> Result<Self, String> {
        if query.len() > MAX_QUERY_BYTES {
            return Err(format!("query is over {MAX_QUERY_BYTES} bytes"));
        }
        let mut words = Vec::new();
        let mut substrings = Vec::new();
        for word in query
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .take(MAX_WORDS)
        {
            let word = word.to_lowercase();
            if word.chars().any(is_cjk) {
                substrings.push(word);
            } else {
                words.push(word);
            }
        }
        if words.is_empty() && substrings.is_empty() {
            return Err("query has no letter or digit to search for".into());
        }
        Ok(Self {
            words,
            substrings,
            whole: query.trim().to_owned(),
        })
    }

    /// Every word, for the snippet.
    fn all(&self) -> impl Iterator<Item = &str> {
        self.substrings
            .iter()
            .chain(&self.words)
            .map(String::as_str)
    }
}

/// Whether `c` is of a script written without spaces between words (Han, kana, Hangul).
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x2E80..=0x2FDF      // CJK radicals
        | 0x3040..=0x30FF    // Hiragana, Katakana
        | 0x3100..=0x312F    // Bopomofo
        | 0x3130..=0x318F    // Hangul compatibility jamo
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xAC00..=0xD7AF    // Hangul syllables
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0x20000..=0x3134F  // CJK extensions B..G
    )
}

/// Where a page starts: after the conversation with this `updated_at` and id (pages run from
/// the most recently updated down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchCursor {
    /// The last conversation's `updated_at`.
    pub updated_at: DateTime<Utc>,
    /// The last conversation's id.
    pub id: ConversationId,
}

impl SearchCursor {
    /// After `conversation`.
    pub fn after(conversation: &Conversation) -> Self {
        Self {
            updated_at: conversation.updated_at,
            id: conversation.id,
        }
    }

    /// As the `next_cursor` of an answer: `<microseconds>.<id>`, opaque to clients.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.updated_at.timestamp_micros(), self.id)
    }

    /// Reads what [`encode`](Self::encode) wrote.
    pub fn decode(text: &str) -> Option<Self> {
        if text.len() > MAX_CURSOR_BYTES {
            return None;
        }
        let (micros, id) = text.split_once('.')?;
        Some(Self {
            updated_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            id: id.parse().ok()?,
        })
    }
}

/// What [`Store::search_conversations`](crate::store::Store::search_conversations) looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// Only these sites' (`None`: every site's).
    pub sites: Option<Vec<SiteId>>,
    /// Only in this status, when set.
    pub status: Option<ConversationStatus>,
    /// What to match.
    pub text: SearchText,
    /// Only conversations after this one in the order (most recently updated first).
    pub after: Option<SearchCursor>,
    /// At most this many.
    pub limit: u32,
}

/// One conversation a store found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredHit {
    /// The conversation.
    pub conversation: Conversation,
    /// Its newest message matching the text, if one does (else the visitor's name or email
    /// matched).
    pub message: Option<Message>,
}

/// One result of a search, as clients get it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchResult {
    /// The conversation.
    pub conversation: Conversation,
    /// The `seq` of its newest matching message; absent when the visitor's name or email
    /// matched and no message did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    /// At most 160 characters of that message around the first word found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snippet: Option<String>,
}

impl SearchResult {
    /// The result for a stored hit: its snippet around the first word of `text` found.
    pub fn of(hit: StoredHit, text: &SearchText) -> Self {
        let (seq, snippet) = match &hit.message {
            Some(m) => (Some(m.seq), Some(snippet(&m.body, text))),
            None => (None, None),
        };
        Self {
            conversation: hit.conversation,
            seq,
            snippet,
        }
    }
}

/// At most [`SNIPPET_CHARS`] characters of `body` around the first word of `text` in it (the
/// start when none is found), with `…` where it was cut.
pub fn snippet(body: &str, text: &SearchText) -> String {
    let chars: Vec<char> = body.chars().collect();
    if chars.len() <= SNIPPET_CHARS {
        return body.to_owned();
    }
    let lower: Vec<char> = chars
        .iter()
        .map(|c| c.to_lowercase().next().unwrap_or(*c))
        .collect();
    let found = text.all().find_map(|word| {
        let word: Vec<char> = word.chars().collect();
        lower.windows(word.len().max(1)).position(|w| w == word)
    });
    let at = found.unwrap_or(0);
    let start = at.saturating_sub(SNIPPET_CHARS / 4);
    let start = start.min(chars.len() - (SNIPPET_CHARS - 2));
    let end = (start + SNIPPET_CHARS - 2).min(chars.len());
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    out.extend(&chars[start..end]);
    if end < chars.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_syntax_is_only_separators() {
        let t = SearchText::parse(r#"  "refund*" AND (NOT x) OR y:* -z NEAR(a b) %_\ "#).unwrap();
        assert_eq!(
            t.words,
            ["refund", "and", "not", "x", "or", "y", "z", "near"]
        );
        assert!(t.substrings.is_empty());
        assert!(SearchText::parse(r#" "* :: ' " "#).is_err());
        assert!(SearchText::parse(&"a".repeat(201)).is_err());
        let t = SearchText::parse("你好 Café").unwrap();
        assert_eq!(t.substrings, ["你好"]);
        assert_eq!(t.words, ["café"]);
        assert_eq!(t.whole, "你好 Café");
    }

    #[test]
    fn snippets_are_bounded_and_centred() {
        let text = SearchText::parse("needle").unwrap();
        assert_eq!(snippet("short needle", &text), "short needle");
        let body = format!("{}Needle{}", "x".repeat(500), "y".repeat(500));
        let s = snippet(&body, &text);
        assert!(s.chars().count() <= SNIPPET_CHARS, "{}", s.chars().count());
        assert!(s.contains("Needle") && s.starts_with('…') && s.ends_with('…'));
        let s = snippet(&"字".repeat(400), &SearchText::parse("nothing").unwrap());
        assert!(s.chars().count() <= SNIPPET_CHARS && !s.starts_with('…'));
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let c = SearchCursor {
            updated_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: ConversationId::new_random(),
        };
        assert_eq!(SearchCursor::decode(&c.encode()), Some(c));
        for bad in ["", "x.y", "1.", ".1", "1.not-a-uuid", &"9".repeat(200)] {
            assert_eq!(SearchCursor::decode(bad), None, "{bad}");
        }
    }
}
