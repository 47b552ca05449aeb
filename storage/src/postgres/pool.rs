//! One pooled connection per store operation: taken from the pool with a bounded wait, the
//! operation bounded by a timeout, and a connection that timed out or failed as a connection
//! taken out of the pool instead of being reused.

use chat_core::StoreError;
use deadpool_postgres::Object;

use super::errors::pool_err;
use super::{tls, PostgresStore};
use crate::StorageError;

impl PostgresStore {
    /// A connection from the pool; a pool that cannot make one is [`StoreError::Unavailable`],
    /// with why TLS failed when it did.
    pub(super) async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|e| match pool_err(e) {
            StorageError::Store(StoreError::Unavailable(message)) => {
                StoreError::Unavailable(tls::explain(message, self.ssl_mode))
            }
            StorageError::Store(e) => e,
            other => StoreError::Other(other.to_string()),
        })
    }
}

/// An operation's error, as far as the pool cares: whether the connection is to be discarded.
pub(super) trait OperationError {
    /// The connection failed (its error, not the query's): do not reuse it.
    fn is_unavailable(&self) -> bool;
    /// The error of an operation that did not finish in time.
    fn timed_out() -> Self;
}

impl OperationError for StoreError {
    fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    fn timed_out() -> Self {
        StoreError::Unavailable("the database did not answer in time".into())
    }
}

/// Ends an operation on a pooled connection: a timed-out operation, or one that failed with a
/// connection error, takes its connection out of the pool instead of returning it.
pub(super) fn finish<T, E: OperationError>(
    client: Object,
    result: Result<Result<T, E>, tokio::time::error::Elapsed>,
) -> Result<T, E> {
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            if e.is_unavailable() || client.is_closed() {
                drop(Object::take(client));
            }
            Err(e)
        }
        Err(_) => {
            drop(Object::take(client));
            Err(E::timed_out())
        }
    }
}

/// Runs `$body` with a pooled connection bound to `$client`, bounded by `$timeout`. (`mod pool`
/// is declared with `#[macro_use]` first, so that the modules beside it can use this.)
macro_rules! with_client {
    ($self:ident, $timeout:expr, |$client:ident| $body:expr) => {{
        #[allow(unused_mut)]
        let mut $client = $self.client().await?;
        let result = tokio::time::timeout($timeout, async { $body }).await;
        $crate::postgres::pool::finish($client, result)
    }};
}
