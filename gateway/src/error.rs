//! The gateway's error type.

/// Why the gateway could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The store could not be opened or migrated.
    #[error(transparent)]
    Storage(#[from] chat_storage::StorageError),
    /// A file or socket operation failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// TLS files could not be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// Anything else, described.
    #[error("{0}")]
    Other(String),
}
