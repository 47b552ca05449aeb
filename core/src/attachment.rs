//! Attachments (issue 15, item 8): images and files a participant uploads over HTTP
//! (`POST /chat/api/attachments`, docs/http-api.md) and then sends in a message, which carries an
//! [`AttachmentRef`] on every transport unchanged. The bytes are kept by the store (Postgres or
//! the embedded store) or, with `CHAT_UPLOAD_DIR`, in a directory ([`AttachmentFiles`]); the
//! metadata is always in the store. An attachment is served only to the participants of the
//! conversation it was sent in (its uploader, the conversation's visitor unless it came in an
//! internal note, and the agents of its site).
//!
//! Every upload is checked here before anything is written: its size against
//! `CHAT_MAX_UPLOAD_BYTES`, its declared type against the allow-list `CHAT_UPLOAD_TYPES`, and its
//! first bytes against that type ([`UploadPolicy::check`]), so a page's script cannot pass for
//! an image.

pub use crate::model::{AttachmentRef, INLINE_IMAGE_TYPES};
use crate::model::{ConversationId, Role, SiteId};
use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// `CHAT_MAX_UPLOAD_BYTES`'s default: 5 MiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 5 * 1024 * 1024;

/// `CHAT_UPLOAD_TYPES`'s default: the images browsers show inline, PDF and plain text. SVG is
/// not in it: an SVG is a document that can run script.
pub const DEFAULT_UPLOAD_TYPES: &str =
    "image/png,image/jpeg,image/gif,image/webp,application/pdf,text/plain";

/// `CHAT_UPLOAD_UNSENT_TTL_SECS`'s default: an upload no message carried after a day is deleted.
pub const DEFAULT_UNSENT_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Longest file name kept, in characters (longer names are cut).
pub const MAX_NAME_CHARS: usize = 200;

/// Longest content type accepted, in bytes.
pub const MAX_CONTENT_TYPE_BYTES: usize = 100;

/// An attachment's metadata, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Its id (random).
    pub id: Uuid,
    /// The site of its uploader.
    pub site_id: SiteId,
    /// The conversation it was uploaded for or first sent in; `None` until a visitor who named
    /// no conversation sends it.
    pub conversation_id: Option<ConversationId>,
    /// Visitor or agent.
    pub uploader_role: Role,
    /// The visitor id or the agent id.
    pub uploader_id: String,
    /// See [`AttachmentRef::name`].
    pub name: String,
    /// See [`AttachmentRef::content_type`].
    pub content_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// Whether a message the visitor sees (not an internal note) has carried it: until then
    /// only its uploader and the site's agents may read it.
    pub visible_to_visitor: bool,
    /// When it was uploaded.
    pub created_at: DateTime<Utc>,
}

impl Attachment {
    /// What a message carries of it.
    pub fn to_ref(&self) -> AttachmentRef {
        AttachmentRef {
            id: self.id,
            name: self.name.clone(),
            content_type: self.content_type.clone(),
            size: self.size,
        }
    }
}

/// An attachment read back from a store: its metadata and, when the store keeps the bytes,
/// the bytes (`None` when they are in `CHAT_UPLOAD_DIR`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAttachment {
    /// The metadata.
    pub attachment: Attachment,
    /// The bytes, when the store holds them.
    pub content: Option<Vec<u8>>,
}

/// Where the bytes of attachments live when not in the store: `CHAT_UPLOAD_DIR`. The one
/// implementation is `chat_storage::AttachmentDir`; without one, the store keeps the bytes.
#[async_trait]
pub trait AttachmentFiles: Send + Sync + 'static {
    /// Writes the bytes of attachment `id`, whole or not at all.
    async fn write(&self, id: Uuid, bytes: &[u8]) -> Result<(), StoreError>;
    /// The bytes of attachment `id`; `None` when there are none.
    async fn read(&self, id: Uuid) -> Result<Option<Vec<u8>>, StoreError>;
    /// Removes the bytes of attachment `id` (nothing when there are none).
    async fn delete(&self, id: Uuid) -> Result<(), StoreError>;
}

/// The upload limits: `CHAT_MAX_UPLOAD_BYTES` and `CHAT_UPLOAD_TYPES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPolicy {
    /// Largest upload in bytes; 0 turns uploads off.
    pub max_bytes: u64,
    /// The content types accepted (lower case, no parameters).
    pub allowed_types: Vec<String>,
}

impl Default for UploadPolicy {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            allowed_types: parse_types(DEFAULT_UPLOAD_TYPES).unwrap_or_default(),
        }
    }
}

/// Why an upload is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadRefusal {
    /// Over `CHAT_MAX_UPLOAD_BYTES` (or uploads are off).
    #[error("the file has {size} bytes; the limit is {max} (CHAT_MAX_UPLOAD_BYTES)")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Empty.
    #[error("the file is empty")]
    Empty,
    /// Not in `CHAT_UPLOAD_TYPES`.
    #[error("content type `{0}` is not accepted; send one of {1} (CHAT_UPLOAD_TYPES)")]
    TypeNotAllowed(String, String),
    /// Its bytes are not what its type says.
    #[error("the file's content is not {0}")]
    ContentMismatch(String),
}

impl UploadRefusal {
    /// The `reason` label of `chat_upload_refused_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::Empty => "empty",
            Self::TypeNotAllowed(..) => "type_not_allowed",
            Self::ContentMismatch(_) => "content_mismatch",
        }
    }
}

impl UploadPolicy {
    /// Checks an upload of `content_type` (as the client declared it) and `bytes`; returns the
    /// type kept (lower case, without parameters).
    pub fn check(&self, content_type: &str, bytes: &[u8]) -> Result<String, UploadRefusal> {
        let size = bytes.len() as u64;
        if size > self.max_bytes {
            return Err(UploadRefusal::TooLarge {
                size,
                max: self.max_bytes,
            });
        }
        if bytes.is_empty() {
            return Err(UploadRefusal::Empty);
        }
        let kind = normalize_type(content_type);
        if !self.allowed_types.contains(&kind) {
            let shown: String = kind.chars().take(MAX_CONTENT_TYPE_BYTES).collect();
            return Err(UploadRefusal::TypeNotAllowed(
                shown,
                self.allowed_types.join(", "),
            ));
        }
        if !content_matches(&kind, bytes) {
            return Err(UploadRefusal::ContentMismatch(kind));
        }
        Ok(kind)
    }
}

/// A content type without parameters, trimmed and in lower case: `Image/PNG; x=y` is
/// `image/png`.
pub fn normalize_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Parses `CHAT_UPLOAD_TYPES`: a comma-separated list of `type/subtype`.
pub fn parse_types(list: &str) -> Result<Vec<String>, String> {
    let mut types = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let kind = normalize_type(item);
        let valid = kind.len() <= MAX_CONTENT_TYPE_BYTES
            && kind.split_once('/').is_some_and(|(a, b)| {
                let token = |s: &str| {
                    !s.is_empty()
                        && s.bytes()
                            .all(|c| c.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&c))
                };
                token(a) && token(b)
            });
        if !valid {
            return Err(format!("`{item}` is not a content type (type/subtype)"));
        }
        if kind == "image/svg+xml" || kind == "text/html" {
            return Err(format!(
                "`{kind}` can run script in a browser and is never accepted"
            ));
        }
        if !types.contains(&kind) {
            types.push(kind);
        }
    }
    Ok(types)
}

/// Whether `bytes` begin as a file of type `kind` must. Types without a known signature are
/// taken as declared (they are served as downloads, never rendered).
pub fn content_matches(kind: &str, bytes: &[u8]) -> bool {
    match kind {
        "image/png" => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" => bytes.starts_with(&[0xFF, 0xD8, 0xFF]),
        "image/gif" => bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a"),
        "image/webp" => bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP",
        "application/pdf" => bytes.starts_with(b"%PDF-"),
        "application/zip" => bytes.starts_with(b"PK\x03\x04"),
        _ if kind.starts_with("text/") => std::str::from_utf8(bytes).is_ok() && !bytes.contains(&0),
        _ => true,
    }
}

/// A file name as kept: its last path component, without control characters, cut to
/// [`MAX_NAME_CHARS`]; `file` when nothing is left.
pub fn clean_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        "file".to_owned()
    } else {
        cleaned.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_size_type_and_signature() {
        let policy = UploadPolicy {
            max_bytes: 16,
            allowed_types: parse_types("image/png, text/plain").unwrap(),
        };
        let png = b"\x89PNG\r\n\x1a\nrest";
        assert_eq!(policy.check("Image/PNG; q=1", png).unwrap(), "image/png");
        assert_eq!(policy.check("image/png", b""), Err(UploadRefusal::Empty));
        assert!(matches!(
            policy.check("image/png", &[0x89; 17]),
            Err(UploadRefusal::TooLarge { size: 17, max: 16 })
        ));
        assert!(matches!(
            policy.check("image/gif", b"GIF89a"),
            Err(UploadRefusal::TypeNotAllowed(..))
        ));
        assert_eq!(
            policy.check("image/png", b"<script>"),
            Err(UploadRefusal::ContentMismatch("image/png".into()))
        );
        assert!(policy.check("text/plain", b"a\0b").is_err());
        assert!(policy.check("text/plain", "héllo".as_bytes()).is_ok());
    }

    #[test]
    fn refuses_types_that_run_script_and_nonsense() {
        assert!(parse_types("image/svg+xml").is_err());
        assert!(parse_types("text/html").is_err());
        assert!(parse_types("png").is_err());
        assert!(parse_types("a/b c").is_err());
        assert_eq!(
            parse_types(DEFAULT_UPLOAD_TYPES).unwrap().len(),
            6,
            "the default list parses"
        );
    }

    #[test]
    fn names_lose_paths_and_control_characters() {
        assert_eq!(clean_name("../../etc/passwd"), "passwd");
        assert_eq!(clean_name("C:\\x\\a.png"), "a.png");
        assert_eq!(clean_name("a\nb.png"), "ab.png");
        assert_eq!(clean_name(".."), "file");
        assert_eq!(clean_name(&"x".repeat(500)).chars().count(), MAX_NAME_CHARS);
    }

    #[test]
    fn signatures() {
        assert!(content_matches("image/jpeg", &[0xFF, 0xD8, 0xFF, 0xE0]));
        assert!(content_matches("image/webp", b"RIFF\0\0\0\0WEBPVP8 "));
        assert!(!content_matches("image/webp", b"RIFF\0\0\0\0WAVE"));
        assert!(content_matches("application/pdf", b"%PDF-1.7"));
        assert!(content_matches("application/octet-stream", b"anything"));
    }
}
