//! Conversation search ([`crate::search`]) for agents, one path for the `search_conversations`
//! command and `GET /chat/api/conversations/search`: site-scoped, rate-limited per agent, and
//! paged by count and by bytes.

use crate::error::ChatError;
use crate::model::{ConversationStatus, Principal, SiteId};
use crate::search::{SearchCursor, SearchQuery, SearchResult, SearchText};
use serde::{Deserialize, Serialize};

use super::chat_service::ChatService;

/// Results per page when the client does not say.
pub const DEFAULT_SEARCH_LIMIT: u32 = 20;
/// Most results per page.
pub const MAX_SEARCH_LIMIT: u32 = 50;

/// Searches per agent (over all their sessions and HTTP requests on this process): two a
/// second, ten at once. A search reads many rows; typing in the console's box sends one per
/// pause, far below this.
pub const SEARCH_RATE: crate::rate::RateLimit = crate::rate::RateLimit {
    per_sec: 2.0,
    burst: 10,
};

/// What a search asks, as both the command and the HTTP endpoint carry it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchRequest {
    /// The text (at most [`crate::search::MAX_QUERY_BYTES`]).
    pub query: String,
    /// Only this site's conversations (default: every site of the agent).
    pub site: Option<SiteId>,
    /// Only in this status.
    pub status: Option<ConversationStatus>,
    /// The `next_cursor` of the page before.
    pub cursor: Option<String>,
    /// Results per page (default 20, at most 50).
    pub limit: Option<u32>,
}

/// A page of results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchPage {
    /// The results, most recently updated conversation first.
    pub results: Vec<SearchResult>,
    /// Present when more results may follow: pass it as `cursor` for the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl ChatService {
    /// Searches the conversations of the agent's sites (or of `site`).
    pub async fn search(
        &self,
        principal: &Principal,
        request: SearchRequest,
    ) -> Result<SearchPage, ChatError> {
        let Principal::Agent { agent, sites } = principal else {
            return Err(ChatError::Forbidden(
                "only agents search conversations".into(),
            ));
        };
        let text = SearchText::parse(&request.query).map_err(ChatError::BadRequest)?;
        let sites = match request.site {
            Some(site) if sites.contains(&site) => Some(vec![site]),
            Some(site) => {
                return Err(ChatError::Forbidden(format!(
                    "you are not an agent of site `{}`",
                    site.chars().take(70).collect::<String>()
                )))
            }
            None => sites.list().map(<[SiteId]>::to_vec),
        };
        let after = match request.cursor.as_deref().filter(|c| !c.is_empty()) {
            None => None,
            Some(cursor) => Some(SearchCursor::decode(cursor).ok_or_else(|| {
                ChatError::BadRequest("cursor is not a `next_cursor` of this search".into())
            })?),
        };
        let limit = request
            .limit
            .unwrap_or(DEFAULT_SEARCH_LIMIT)
            .clamp(1, MAX_SEARCH_LIMIT);
        if let Err(retry_after) = self.inner.searches.take(&agent.id) {
            return Err(ChatError::RateLimited {
                what: "searching too often".into(),
                retry_after,
            });
        }
        // One more than asked tells whether another page follows.
        let hits = self
            .inner
            .store
            .search_conversations(&SearchQuery {
                sites,
                status: request.status,
                text: text.clone(),
                after,
                limit: limit + 1,
            })
            .await?;
        let mut more = hits.len() > limit as usize;
        let mut budget = self.inner.config.max_answer_bytes.saturating_sub(64);
        let mut results = Vec::new();
        for hit in hits.into_iter().take(limit as usize) {
            let result = SearchResult::of(hit, &text);
            let size = serde_json::to_vec(&result).map_or(0, |json| json.len()) + 1;
            // Never an empty page while results follow (one result is far below any budget).
            if !results.is_empty() && size > budget {
                more = true;
                break;
            }
            budget = budget.saturating_sub(size);
            results.push(result);
        }
        let next_cursor = results
            .last()
            .filter(|_| more)
            .map(|last| SearchCursor::after(&last.conversation).encode());
        Ok(SearchPage {
            results,
            next_cursor,
        })
    }
}
