//! Canned responses ([`crate::canned`]): listed, created, changed and deleted by agents of
//! their site (an API key counts as an agent of its sites), through one path whatever asks
//! (the HTTP API, the console).

use crate::canned::{CannedFields, CannedResponse, CannedWrite, MAX_PER_SITE};
use crate::error::ChatError;
use crate::model::{Principal, Sites};
use uuid::Uuid;

use super::chat_service::ChatService;

/// The sites of an agent, or why a visitor is refused.
fn agent_sites(principal: &Principal) -> Result<&Sites, ChatError> {
    match principal {
        Principal::Agent { sites, .. } => Ok(sites),
        Principal::Visitor { .. } => Err(ChatError::Forbidden(
            "only agents manage canned responses".into(),
        )),
    }
}

/// Refuses a site the agent does not work for.
fn check_site(sites: &Sites, site: &str) -> Result<(), ChatError> {
    if sites.contains(site) {
        return Ok(());
    }
    Err(ChatError::Forbidden(format!(
        "you are not an agent of site `{}`",
        site.chars().take(70).collect::<String>()
    )))
}

fn written(write: CannedWrite, site: &str) -> Result<CannedResponse, ChatError> {
    match write {
        CannedWrite::Stored(canned) => Ok(canned),
        CannedWrite::ShortcutTaken => Err(ChatError::Conflict(format!(
            "site `{site}` has a canned response with this shortcut already"
        ))),
        CannedWrite::LimitReached => Err(ChatError::Conflict(format!(
            "site `{site}` has {MAX_PER_SITE} canned responses, the most it may hold"
        ))),
    }
}

impl ChatService {
    /// The canned responses of `site`, by shortcut.
    pub async fn canned_responses(
        &self,
        principal: &Principal,
        site: &str,
    ) -> Result<Vec<CannedResponse>, ChatError> {
        check_site(agent_sites(principal)?, site)?;
        Ok(self.inner.store.canned_responses(site).await?)
    }

    /// Creates a canned response of `site`.
    pub async fn create_canned_response(
        &self,
        principal: &Principal,
        site: &str,
        fields: CannedFields,
    ) -> Result<CannedResponse, ChatError> {
        check_site(agent_sites(principal)?, site)?;
        fields
            .validate(self.inner.config.max_message_chars)
            .map_err(ChatError::BadRequest)?;
        let write = self
            .inner
            .store
            .create_canned_response(site, &fields, MAX_PER_SITE)
            .await?;
        written(write, site)
    }

    /// Replaces the fields of canned response `id` (of one of the agent's sites).
    pub async fn update_canned_response(
        &self,
        principal: &Principal,
        id: Uuid,
        fields: CannedFields,
    ) -> Result<CannedResponse, ChatError> {
        let existing = self.authorized_canned(principal, id).await?;
        fields
            .validate(self.inner.config.max_message_chars)
            .map_err(ChatError::BadRequest)?;
        match self.inner.store.update_canned_response(id, &fields).await {
            Ok(write) => written(write, &existing.site_id),
            Err(crate::StoreError::NotFound(_)) => Err(missing(id)),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes canned response `id` (of one of the agent's sites).
    pub async fn delete_canned_response(
        &self,
        principal: &Principal,
        id: Uuid,
    ) -> Result<(), ChatError> {
        self.authorized_canned(principal, id).await?;
        if self.inner.store.delete_canned_response(id).await? {
            Ok(())
        } else {
            Err(missing(id))
        }
    }

    async fn authorized_canned(
        &self,
        principal: &Principal,
        id: Uuid,
    ) -> Result<CannedResponse, ChatError> {
        let sites = agent_sites(principal)?;
        let canned = self
            .inner
            .store
            .canned_response(id)
            .await?
            .ok_or_else(|| missing(id))?;
        check_site(sites, &canned.site_id)?;
        Ok(canned)
    }
}

fn missing(id: Uuid) -> ChatError {
    ChatError::NotFound(format!("canned response {id} does not exist"))
}
