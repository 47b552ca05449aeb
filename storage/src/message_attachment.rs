//! The `attachment` column of `messages` (migration 12), in both stores: the
//! [`AttachmentRef`] a message carries as JSON text, NULL when it carries none. The store only
//! ever writes and reads the column whole, so a message's attachment round-trips exactly.

use chat_core::attachment::AttachmentRef;
use chat_core::StoreError;

/// The column's value for a message's attachment.
pub(crate) fn to_column(attachment: Option<&AttachmentRef>) -> Result<Option<String>, StoreError> {
    attachment
        .map(|a| {
            serde_json::to_string(a).map_err(|e| {
                StoreError::Other(format!("cannot encode a message's attachment: {e}"))
            })
        })
        .transpose()
}

/// A message's attachment from the column's value.
pub(crate) fn from_column(column: Option<&str>) -> Result<Option<Box<AttachmentRef>>, StoreError> {
    column
        .map(|json| {
            serde_json::from_str(json).map(Box::new).map_err(|e| {
                StoreError::Other(format!("invalid message attachment in the store: {e}"))
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let attachment = AttachmentRef {
            id: uuid::Uuid::new_v4(),
            name: "a \"quoted\" näme.png".into(),
            content_type: "image/png".into(),
            size: 42,
        };
        let column = to_column(Some(&attachment)).unwrap();
        assert_eq!(
            from_column(column.as_deref()).unwrap().as_deref(),
            Some(&attachment)
        );
        assert_eq!(to_column(None).unwrap(), None);
        assert_eq!(from_column(None).unwrap(), None);
        assert!(from_column(Some("{\"id\":1}")).is_err());
    }
}
