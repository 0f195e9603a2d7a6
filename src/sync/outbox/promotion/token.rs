//! The Salesforce refresh token across restarts: with rotation, each refresh returns a new one
//! and invalidates the old, so the configured one is only good once. The latest is kept in the
//! store's `refresh_tokens` table with the hash of the configured token it descends from.

use secrecy::{ExposeSecret, SecretString};

use super::{Promoter, TOKEN_SYSTEM};
use crate::config::SalesforceSettings;
use crate::store::{Store, StoreError};
use crate::sync::{SyncError, Syncer};

/// The kept token to log in with, used only while the configured one is the one it was rotated
/// from: an admin who re-authorises (a new configured token) is not overridden, and the kept
/// one is dropped.
pub(super) async fn kept(s: &SalesforceSettings, store: &Store) -> Result<Option<SecretString>, StoreError> {
    let Some(configured) = s.refresh_token.as_ref() else {
        return Ok(None);
    };
    let hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(configured.expose_secret().as_bytes()))
    };
    match store.refresh_token(TOKEN_SYSTEM).await? {
        Some(k) if k.configured_hash == hash => Ok(k.token.map(SecretString::from)),
        _ => {
            store.set_configured_token(TOKEN_SYSTEM, &hash).await?;
            Ok(None)
        }
    }
}

impl Promoter {
    /// Saves a refresh token the last refresh rotated, so a restart can still log in.
    pub(crate) async fn keep_rotated_token(&self, s: &Syncer) -> Result<(), SyncError> {
        if let Some(current) = self.client.auth().current_refresh_token().await {
            let current = current.expose_secret();
            let kept = s.store.refresh_token(TOKEN_SYSTEM).await?;
            if kept.is_some_and(|k| k.token.as_deref() != Some(current)) {
                s.store.keep_refresh_token(TOKEN_SYSTEM, current).await?;
            }
        }
        Ok(())
    }
}
