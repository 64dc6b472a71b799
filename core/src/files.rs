//! The file store: what an end user uploads for the agent, and what an agent sends the end user.
//! Deployed, an S3 bucket of the stack ([`s3::S3Files`]): a page uploads with a presigned `PUT` and
//! downloads with a presigned `GET`, so no file passes through a function's response. Locally, the
//! runner keeps them in memory and serves the same kind of expiring links itself
//! ([`local::LocalFiles`]).
//!
//! Keys: `uploads/<session>/<upload>` for an end user's, `agent/<session>/<reply>-<n>` for an
//! agent's; the session in the key is what keeps one conversation's files out of another's.

pub mod local;
pub mod s3;

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::domain::files::{shown_inline, FileRef};
use crate::domain::OutboxMessage;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("the file store could not be reached: {0}")]
    Unavailable(String),
    #[error("the file store is not configured")]
    Off,
}

/// A file as the store holds it.
pub struct StoredFile {
    pub bytes: Vec<u8>,
    /// The type it was stored (or uploaded) with.
    pub content_type: Option<String>,
}

/// An upload's presigned request: where to send the bytes, and the headers that must go with them.
#[derive(Debug, Clone, Serialize)]
pub struct UploadRequest {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// How a download is served: its name, its type, and whether a page may show it in place.
pub struct Download<'a> {
    pub name: &'a str,
    pub content_type: &'a str,
    pub inline: bool,
}

impl Download<'_> {
    /// `Content-Disposition`, with the name in RFC 6266's UTF-8 form (and an ASCII fallback).
    pub fn disposition(&self) -> String {
        let kind = if self.inline { "inline" } else { "attachment" };
        let ascii: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._- ".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let encoded: String = url::form_urlencoded::byte_serialize(self.name.as_bytes())
            .collect::<String>()
            .replace('+', "%20");
        format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
    }
}

#[async_trait]
pub trait FileStore: Send + Sync {
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), FileError>;

    /// The file, if there is one; one larger than `max_bytes` is read no further than one byte past
    /// it (enough to refuse it).
    async fn get(&self, key: &str, max_bytes: usize) -> Result<Option<StoredFile>, FileError>;

    async fn delete(&self, key: &str) -> Result<(), FileError>;

    /// A `PUT` that stores exactly `size` bytes of `content_type` at `key`, valid for `ttl`.
    async fn upload_url(
        &self,
        key: &str,
        content_type: &str,
        size: u64,
        ttl: Duration,
    ) -> Result<UploadRequest, FileError>;

    /// A `GET` of the file at `key`, valid for `ttl`, served with the given type and disposition.
    async fn download_url(
        &self,
        key: &str,
        download: &Download<'_>,
        ttl: Duration,
    ) -> Result<String, FileError>;
}

/// A function's files: the store, and the rules every file is checked against.
#[derive(Clone)]
pub struct Files {
    pub store: std::sync::Arc<dyn FileStore>,
    pub rules: crate::domain::files::FileRules,
}

impl Files {
    pub fn off() -> Self {
        Self {
            store: std::sync::Arc::new(NoFiles),
            rules: crate::domain::files::FileRules::off(),
        }
    }

    /// `store` when there is one (a bucket deployed, the runner's own locally), with the rules the
    /// settings give; no store, no files.
    pub fn new(
        store: Option<std::sync::Arc<dyn FileStore>>,
        rules: &crate::domain::files::FileRules,
    ) -> Self {
        match store {
            Some(store) if rules.enabled() => Self {
                store,
                rules: rules.clone(),
            },
            _ => Self::off(),
        }
    }
}

/// No file store: files are off.
pub struct NoFiles;

#[async_trait]
impl FileStore for NoFiles {
    async fn put(&self, _: &str, _: Vec<u8>, _: &str) -> Result<(), FileError> {
        Err(FileError::Off)
    }
    async fn get(&self, _: &str, _: usize) -> Result<Option<StoredFile>, FileError> {
        Err(FileError::Off)
    }
    async fn delete(&self, _: &str) -> Result<(), FileError> {
        Err(FileError::Off)
    }
    async fn upload_url(
        &self,
        _: &str,
        _: &str,
        _: u64,
        _: Duration,
    ) -> Result<UploadRequest, FileError> {
        Err(FileError::Off)
    }
    async fn download_url(
        &self,
        _: &str,
        _: &Download<'_>,
        _: Duration,
    ) -> Result<String, FileError> {
        Err(FileError::Off)
    }
}

/// How long a link to a file works: long enough for a page to show and a person to click it, short
/// enough that a link copied out of a log or a history is soon worthless. A page that needs it later
/// reads the outbox again and gets a new one.
pub const DOWNLOAD_LINK_TTL: Duration = Duration::from_secs(15 * 60);

/// How long a page has to start an upload it asked for.
pub const UPLOAD_LINK_TTL: Duration = Duration::from_secs(5 * 60);

/// The key of an end user's upload in its own conversation.
pub fn upload_key(session_id: &str, upload: &str) -> String {
    format!("uploads/{session_id}/{upload}")
}

/// The key of an agent's `n`-th file of the reply `message_id`: the same on MSC's retry of it.
pub fn agent_file_key(session_id: &str, message_id: &str, n: usize) -> String {
    use sha2::Digest;
    let digest = hex::encode(&sha2::Sha256::digest(message_id.as_bytes())[..12]);
    format!("agent/{session_id}/{digest}-{n}")
}

/// A file of a message as the channel is shown it: what it is, and a link made now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShownFile {
    pub name: String,
    #[serde(rename = "type")]
    pub content_type: String,
    pub size: u64,
    /// `null` when no link could be made (the store was unreachable): the page asks again later.
    pub url: Option<String>,
}

/// The files of `message`, each with a fresh link.
pub async fn shown(files: &dyn FileStore, message: &OutboxMessage) -> Vec<ShownFile> {
    let links = message.files.iter().map(|file| show(files, file));
    futures::future::join_all(links).await
}

async fn show(files: &dyn FileStore, file: &FileRef) -> ShownFile {
    let download = Download {
        name: &file.name,
        content_type: &file.content_type,
        inline: shown_inline(&file.content_type),
    };
    let url = match files
        .download_url(&file.key, &download, DOWNLOAD_LINK_TTL)
        .await
    {
        Ok(url) => Some(url),
        Err(err) => {
            tracing::warn!(error = %err, "no link could be made to a file");
            None
        }
    };
    ShownFile {
        name: file.name.clone(),
        content_type: file.content_type.clone(),
        size: file.size,
        url,
    }
}
