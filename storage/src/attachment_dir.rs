//! `CHAT_UPLOAD_DIR`: attachments' bytes as files in a directory, one per attachment named by
//! its id, instead of in the store ([`chat_core::attachment::AttachmentFiles`]). The directory
//! is created `0700` and each file `0600`: attachments are private to their conversation.
//! A file is written under a temporary name and linked into place, so a reader never sees a
//! half-written one, an existing file is never replaced, and a crash leaves at most a `.part`
//! file behind.

use crate::files::create_private_dir;
use async_trait::async_trait;
use chat_core::attachment::AttachmentFiles;
use chat_core::StoreError;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// Attachments' bytes in a directory.
#[derive(Debug, Clone)]
pub struct AttachmentDir {
    dir: PathBuf,
}

impl AttachmentDir {
    /// Uses `dir`, creating it (`0700`) when missing; fails when it cannot be created.
    pub fn open(dir: &Path) -> io::Result<Self> {
        create_private_dir(dir)?;
        if !dir.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", dir.display()),
            ));
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    fn path(&self, id: Uuid) -> PathBuf {
        // A UUID's hyphenated form is all the name holds: never a path from the wire.
        self.dir.join(id.hyphenated().to_string())
    }
}

fn io_error(what: &str, e: io::Error) -> StoreError {
    StoreError::Other(format!("CHAT_UPLOAD_DIR: {what}: {e}"))
}

#[async_trait]
impl AttachmentFiles for AttachmentDir {
    async fn write(&self, id: Uuid, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.path(id);
        let part = path.with_extension("part");
        let bytes = bytes.to_vec();
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(&part)?;
            let written = file
                .write_all(&bytes)
                .and_then(|()| file.sync_all())
                // A link, unlike a rename, never replaces a file already there: an id's bytes
                // are written once.
                .and_then(|()| std::fs::hard_link(&part, &path));
            let _ = std::fs::remove_file(&part);
            written
        })
        .await
        .map_err(|e| StoreError::Other(format!("CHAT_UPLOAD_DIR: write task: {e}")))?
        .map_err(|e| io_error("write", e))
    }

    async fn read(&self, id: Uuid) -> Result<Option<Vec<u8>>, StoreError> {
        match tokio::fs::read(self.path(id)).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("read", e)),
        }
    }

    async fn delete(&self, id: Uuid) -> Result<(), StoreError> {
        match tokio::fs::remove_file(self.path(id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("delete", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_whole_files_privately_and_reads_them_back() {
        let root = tempfile::tempdir().unwrap();
        let dir = AttachmentDir::open(&root.path().join("uploads")).unwrap();
        let id = Uuid::new_v4();
        assert_eq!(dir.read(id).await.unwrap(), None);
        dir.write(id, b"\x89PNG bytes").await.unwrap();
        assert_eq!(dir.read(id).await.unwrap().unwrap(), b"\x89PNG bytes");
        assert!(!root
            .path()
            .join("uploads")
            .join(format!("{id}.part"))
            .exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&root.path().join("uploads")), 0o700);
            assert_eq!(mode(&dir.path(id)), 0o600);
        }
        // Ids are never reused: a second write of one is refused, the first kept.
        assert!(dir.write(id, b"again").await.is_err());
        assert_eq!(dir.read(id).await.unwrap().unwrap(), b"\x89PNG bytes");
        dir.delete(id).await.unwrap();
        assert_eq!(dir.read(id).await.unwrap(), None);
        dir.delete(id).await.unwrap();
    }

    #[test]
    fn refuses_a_file_as_directory() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(AttachmentDir::open(&file).is_err());
    }
}
