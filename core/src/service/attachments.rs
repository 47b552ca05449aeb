//! Attachments (issue 15, item 8): upload, the check a `send` makes before carrying one, and
//! who may read one. The rules are here, in core, so that every transport and the HTTP API
//! keep them alike; `crate::attachment` holds the types and the upload policy.

use crate::attachment::{Attachment, AttachmentFiles, AttachmentRef, UploadRefusal};
use crate::error::ChatError;
use crate::model::{Conversation, ConversationId, Principal, Role};
use std::sync::Arc;
use uuid::Uuid;

use super::chat_service::ChatService;

impl ChatService {
    /// Keeps the bytes of new attachments in `files` (`CHAT_UPLOAD_DIR`) rather than in the
    /// store. Set once at start-up; attachments stored before keep their bytes where they are.
    pub fn keep_attachment_files_in(&self, files: Arc<dyn AttachmentFiles>) {
        let _ = self.inner.attachment_files.set(files);
    }

    /// Takes one upload from `principal`'s bucket (`CHAT_UPLOAD_RATE_PER_MIN`, per user on
    /// this process), or says when one will be available. Called before the upload's bytes are
    /// read, so a refused upload costs nothing.
    pub fn admit_upload(&self, principal: &Principal) -> Result<(), ChatError> {
        let sender = principal.as_sender();
        self.inner
            .uploads
            .take(&(sender.role, sender.id))
            .map_err(|retry_after| {
                crate::metrics::upload_refused("rate_limited");
                ChatError::RateLimited {
                    what: "uploading too fast (CHAT_UPLOAD_RATE_PER_MIN)".into(),
                    retry_after,
                }
            })
    }

    /// Whether uploads are on (`CHAT_MAX_UPLOAD_BYTES` > 0), and their limits.
    pub fn upload_policy(&self) -> &crate::attachment::UploadPolicy {
        &self.inner.config.uploads
    }

    /// The `uploads` of the `welcome` event; `None` when uploads are off.
    pub(super) fn upload_limits(&self) -> Option<crate::protocol::UploadLimits> {
        let policy = &self.inner.config.uploads;
        (policy.max_bytes > 0).then(|| crate::protocol::UploadLimits {
            max_bytes: policy.max_bytes,
            types: policy.allowed_types.clone(),
        })
    }

    /// Stores an upload of `principal` (admitted by [`ChatService::admit_upload`]): checked
    /// against the upload policy, for
    /// `conversation_id` (required for agents; a visitor's is bound when first sent).
    pub async fn upload(
        &self,
        principal: &Principal,
        conversation_id: Option<ConversationId>,
        name: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> Result<AttachmentRef, ChatError> {
        let policy = &self.inner.config.uploads;
        let content_type = policy.check(content_type, bytes).map_err(|refusal| {
            crate::metrics::upload_refused(refusal.metric_label());
            match refusal {
                UploadRefusal::TooLarge { .. } => ChatError::TooLarge(refusal.to_string()),
                UploadRefusal::Empty => ChatError::BadRequest(refusal.to_string()),
                UploadRefusal::TypeNotAllowed(..) | UploadRefusal::ContentMismatch(_) => {
                    ChatError::UnsupportedType(refusal.to_string())
                }
            }
        })?;
        let (site_id, conversation_id) = match (principal, conversation_id) {
            (Principal::Agent { .. }, None) => {
                return Err(ChatError::BadRequest(
                    "agents must name the conversation_id to upload for".into(),
                ))
            }
            (_, Some(id)) => {
                let conversation = self.authorized_conversation(principal, id).await?;
                (conversation.site_id, Some(conversation.id))
            }
            (Principal::Visitor { site_id, .. }, None) => (site_id.clone(), None),
        };
        let sender = principal.as_sender();
        let attachment = Attachment {
            id: Uuid::new_v4(),
            site_id,
            conversation_id,
            uploader_role: sender.role,
            uploader_id: sender.id,
            name: crate::attachment::clean_name(name),
            content_type,
            size: bytes.len() as u64,
            visible_to_visitor: false,
            created_at: chrono::Utc::now(),
        };
        let store = &self.inner.store;
        match self.inner.attachment_files.get() {
            Some(files) => {
                files.write(attachment.id, bytes).await?;
                store.put_attachment(&attachment, None).await?;
            }
            None => store.put_attachment(&attachment, Some(bytes)).await?,
        }
        crate::metrics::attachment_uploaded(principal.role(), attachment.size);
        Ok(attachment.to_ref())
    }

    /// The attachment `id` as a message of `conversation` by `principal` carries it: it must be
    /// the principal's own upload, for this conversation or for none yet; it is then bound to
    /// the conversation (visible to its visitor unless `note`). Anything else is `not_found`,
    /// as an attachment that does not exist is.
    pub(super) async fn attach(
        &self,
        principal: &Principal,
        conversation: &Conversation,
        id: Uuid,
        note: bool,
    ) -> Result<AttachmentRef, ChatError> {
        let not_found = || {
            ChatError::NotFound(format!(
                "attachment {id} is not one you uploaded for this conversation"
            ))
        };
        let store = &self.inner.store;
        let stored = store.attachment(id).await?.ok_or_else(not_found)?;
        let sender = principal.as_sender();
        let attachment = &stored.attachment;
        let yours = attachment.uploader_role == sender.role && attachment.uploader_id == sender.id;
        let here = attachment.site_id == conversation.site_id
            && attachment
                .conversation_id
                .is_none_or(|bound| bound == conversation.id);
        if !yours || !here {
            return Err(not_found());
        }
        let bound = store
            .bind_attachment(id, conversation.id, !note)
            .await?
            .ok_or_else(not_found)?;
        Ok(bound.to_ref())
    }

    /// Deletes the uploads no message carried within `ttl` of their upload
    /// (`CHAT_UPLOAD_UNSENT_TTL_SECS`), with their bytes, a page at a time; returns how many.
    /// Run every few minutes by the gateway, so that uploads never sent cannot fill the disk.
    pub async fn sweep_unsent_attachments(
        &self,
        ttl: std::time::Duration,
    ) -> Result<usize, ChatError> {
        const PAGE: u32 = 500;
        let before =
            chrono::Utc::now() - chrono::TimeDelta::from_std(ttl).unwrap_or(chrono::TimeDelta::MAX);
        let mut deleted = 0;
        loop {
            let ids = self
                .inner
                .store
                .delete_unsent_attachments(before, PAGE)
                .await?;
            if let Some(files) = self.inner.attachment_files.get() {
                for id in &ids {
                    files.delete(*id).await?;
                }
            }
            deleted += ids.len();
            crate::metrics::attachments_swept(ids.len());
            if ids.len() < PAGE as usize {
                return Ok(deleted);
            }
        }
    }

    /// Attachment `id` with its bytes, when `principal` may read it: the site's agents, its
    /// uploader, and the visitor of its conversation once a message they see carried it.
    /// Otherwise `not_found`, as for one that does not exist, so ids cannot be probed.
    pub async fn download(
        &self,
        principal: &Principal,
        id: Uuid,
    ) -> Result<(AttachmentRef, Vec<u8>), ChatError> {
        let not_found = || ChatError::NotFound(format!("attachment {id} does not exist"));
        let store = &self.inner.store;
        let stored = store.attachment(id).await?.ok_or_else(not_found)?;
        let attachment = &stored.attachment;
        let allowed = match principal {
            Principal::Agent { sites, .. } => sites.contains(&attachment.site_id),
            Principal::Visitor {
                visitor_id,
                site_id,
            } => {
                let uploader = attachment.uploader_role == Role::Visitor
                    && attachment.uploader_id == visitor_id.to_string();
                let participant = match (attachment.visible_to_visitor, attachment.conversation_id)
                {
                    (true, Some(conversation_id)) => store
                        .conversation(conversation_id)
                        .await?
                        .is_some_and(|c| c.visitor_id == *visitor_id),
                    _ => false,
                };
                *site_id == attachment.site_id && (uploader || participant)
            }
        };
        if !allowed {
            return Err(not_found());
        }
        let bytes = match stored.content {
            Some(bytes) => bytes,
            None => match self.inner.attachment_files.get() {
                Some(files) => files.read(id).await?.ok_or_else(not_found)?,
                None => return Err(not_found()),
            },
        };
        Ok((attachment.to_ref(), bytes))
    }
}
