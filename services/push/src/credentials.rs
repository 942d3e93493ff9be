//! The Google service-account key file that authorises sends (`TRYGG_FCM_CREDENTIALS`).
//!
//! The key is parsed and test-signed when it is loaded, so a broken file stops `serve` at start
//! (exit 64) instead of failing the first alarm. `token_uri` is always read from the file:
//! that is what Google documents, and it lets tests point the exchange at a fake.

use std::fmt;
use std::path::Path;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;

/// Why a service-account key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The key file could not be read.
    #[error("cannot read service-account file {path}: {source}")]
    Read {
        /// The path that was tried.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a service-account JSON with the fields we need.
    #[error("service-account JSON is invalid: {0}")]
    Json(#[from] serde_json::Error),
    /// `private_key` is not a usable RSA key in PEM form.
    #[error("service-account private_key is not a usable RSA PEM key: {0}")]
    Key(#[from] jsonwebtoken::errors::Error),
}

/// The fields of a service-account key file this crate uses; the private key never prints.
#[derive(Clone)]
pub struct ServiceAccountKey {
    project_id: String,
    client_email: String,
    token_uri: String,
    private_key_id: Option<String>,
    key: EncodingKey,
}

/// The JSON fields, as Google writes them.
#[derive(Deserialize)]
struct KeyFile {
    project_id: String,
    client_email: String,
    token_uri: String,
    private_key: String,
    private_key_id: Option<String>,
}

impl ServiceAccountKey {
    /// Reads and checks a key file, e.g. the path in `TRYGG_FCM_CREDENTIALS`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, CredentialsError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|source| CredentialsError::Read { path: path.display().to_string(), source })?;
        Self::from_json(&text)
    }

    /// Parses a key file's JSON text and proves the private key can sign.
    pub fn from_json(text: &str) -> Result<Self, CredentialsError> {
        let file: KeyFile = serde_json::from_str(text)?;
        let key = EncodingKey::from_rsa_pem(file.private_key.as_bytes())?;
        // `from_rsa_pem` only decodes the PEM; ring checks the RSA key when it first signs.
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &serde_json::json!({}), &key)?;
        Ok(Self {
            project_id: file.project_id,
            client_email: file.client_email,
            token_uri: file.token_uri,
            private_key_id: file.private_key_id,
            key,
        })
    }

    /// The Firebase project the messages are sent in.
    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// The service account's e-mail: the `iss` of its assertions.
    pub fn client_email(&self) -> &str {
        &self.client_email
    }

    /// Where assertions are exchanged for access tokens: also their `aud`.
    pub fn token_uri(&self) -> &str {
        &self.token_uri
    }

    /// The key id, sent as the JWT `kid` so Google can pick the key without trying each.
    pub(crate) fn private_key_id(&self) -> Option<&str> {
        self.private_key_id.as_deref()
    }

    /// The RSA signing key.
    pub(crate) fn encoding_key(&self) -> &EncodingKey {
        &self.key
    }
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .field("private_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_with_a_broken_private_key_is_refused_at_load() {
        let text = serde_json::json!({
            "type": "service_account",
            "project_id": "p",
            "client_email": "a@p.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.googleapis.com/token",
            "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        })
        .to_string();
        assert!(matches!(ServiceAccountKey::from_json(&text), Err(CredentialsError::Key(_))));
    }

    #[test]
    fn a_key_file_without_token_uri_is_refused() {
        let text = r#"{"project_id":"p","client_email":"a@b","private_key":"x"}"#;
        assert!(matches!(ServiceAccountKey::from_json(text), Err(CredentialsError::Json(_))));
    }

    #[test]
    fn a_missing_file_names_its_path() {
        let err = ServiceAccountKey::from_file("/nonexistent/sa.json").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/sa.json"));
    }
}
