//! The local runner's file store: files in memory, and links that work like S3's presigned ones
//! (an expiry and an HMAC over what the link may do), served by [`routes`] at `/v1/local-files/`.
//! Written here rather than taken from a crate: it is the runner's stand-in for S3, a map and a
//! signature over a few fields.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;

use super::{Download, FileError, FileStore, StoredFile, UploadRequest};
use crate::clock::Clock;
use crate::domain::files::MAX_FILE_BYTES;

/// Where the links point: `{base_url}/v1/local-files/<key>`.
pub const PATH: &str = "/v1/local-files";

pub struct LocalFiles {
    base_url: String,
    secret: [u8; 32],
    clock: Arc<dyn Clock>,
    objects: Mutex<HashMap<String, (Vec<u8>, String)>>,
}

impl LocalFiles {
    /// `base_url`: the runner's own address, as a page reaches it (`http://127.0.0.1:3000`).
    pub fn new(base_url: &str, clock: Arc<dyn Clock>) -> Self {
        let mut secret = [0u8; 32];
        secret[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        secret[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            secret,
            clock,
            objects: Mutex::default(),
        }
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Vec<u8>, String)>> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What a link is allowed to do, signed: a link changed in any field no longer verifies.
    fn sign(&self, fields: &[&str]) -> String {
        // HMAC takes keys of any length: this never fails.
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret) else {
            return String::new();
        };
        for field in fields {
            mac.update(field.as_bytes());
            mac.update(b"\n");
        }
        hex::encode(mac.finalize().into_bytes())
    }

    fn verify(&self, fields: &[&str], signature: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.sign(fields)
            .as_bytes()
            .ct_eq(signature.as_bytes())
            .into()
    }

    fn link(&self, key: &str, query: &[(&str, &str)]) -> String {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query)
            .finish();
        format!("{}{PATH}/{key}?{query}", self.base_url)
    }

    fn expires(&self, ttl: Duration) -> String {
        let secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        self.clock.now().saturating_add(secs).to_string()
    }
}

#[async_trait]
impl FileStore for LocalFiles {
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), FileError> {
        self.objects()
            .insert(key.to_owned(), (bytes, content_type.to_owned()));
        Ok(())
    }

    async fn get(&self, key: &str, max_bytes: usize) -> Result<Option<StoredFile>, FileError> {
        Ok(self
            .objects()
            .get(key)
            .map(|(bytes, content_type)| StoredFile {
                bytes: bytes[..bytes.len().min(max_bytes.saturating_add(1))].to_vec(),
                content_type: Some(content_type.clone()),
            }))
    }

    async fn delete(&self, key: &str) -> Result<(), FileError> {
        self.objects().remove(key);
        Ok(())
    }

    async fn upload_url(
        &self,
        key: &str,
        content_type: &str,
        size: u64,
        ttl: Duration,
    ) -> Result<UploadRequest, FileError> {
        let expires = self.expires(ttl);
        let size = size.to_string();
        let signature = self.sign(&["put", key, content_type, &size, &expires]);
        Ok(UploadRequest {
            url: self.link(
                key,
                &[
                    ("op", "put"),
                    ("size", &size),
                    ("expires", &expires),
                    ("sig", &signature),
                ],
            ),
            headers: vec![("content-type".to_owned(), content_type.to_owned())],
        })
    }

    async fn download_url(
        &self,
        key: &str,
        download: &Download<'_>,
        ttl: Duration,
    ) -> Result<String, FileError> {
        let expires = self.expires(ttl);
        let disposition = download.disposition();
        let signature = self.sign(&["get", key, download.content_type, &disposition, &expires]);
        Ok(self.link(
            key,
            &[
                ("op", "get"),
                ("type", download.content_type),
                ("disposition", &disposition),
                ("expires", &expires),
                ("sig", &signature),
            ],
        ))
    }
}

#[derive(Deserialize)]
struct LinkQuery {
    op: String,
    expires: String,
    sig: String,
    size: Option<String>,
    #[serde(rename = "type")]
    content_type: Option<String>,
    disposition: Option<String>,
}

fn refused(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

impl LinkQuery {
    fn expired(&self, now: i64) -> bool {
        self.expires.parse::<i64>().map_or(true, |at| at < now)
    }
}

/// The links' routes, as the local runner serves them beside the functions' routers.
pub fn routes(files: Arc<LocalFiles>) -> Router {
    Router::new()
        .route(&format!("{PATH}/{{*key}}"), get(download).put(upload))
        // The route's own limit: a whole file, not an API request's 64 KiB.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FILE_BYTES + 1))
        .with_state(files)
}

async fn upload(
    State(files): State<Arc<LocalFiles>>,
    Path(key): Path<String>,
    Query(link): Query<LinkQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let size = link.size.clone().unwrap_or_default();
    if link.op != "put"
        || !files.verify(
            &["put", &key, content_type, &size, &link.expires],
            &link.sig,
        )
    {
        return refused(
            StatusCode::FORBIDDEN,
            "upload_link_invalid",
            "this upload link does not allow this request (its type, size or file differ)",
        );
    }
    if link.expired(files.clock.now()) {
        return refused(
            StatusCode::FORBIDDEN,
            "upload_link_expired",
            "this upload link has expired: ask for a new one",
        );
    }
    if body.len().to_string() != size {
        return refused(
            StatusCode::BAD_REQUEST,
            "upload_size_differs",
            "the body is not the size the upload declared",
        );
    }
    files
        .objects()
        .insert(key, (body.to_vec(), content_type.to_owned()));
    StatusCode::OK.into_response()
}

async fn download(
    State(files): State<Arc<LocalFiles>>,
    Path(key): Path<String>,
    Query(link): Query<LinkQuery>,
) -> Response {
    let content_type = link.content_type.clone().unwrap_or_default();
    let disposition = link.disposition.clone().unwrap_or_default();
    let signed = [
        "get",
        key.as_str(),
        &content_type,
        &disposition,
        &link.expires,
    ];
    if link.op != "get" || !files.verify(&signed, &link.sig) {
        return refused(
            StatusCode::FORBIDDEN,
            "download_link_invalid",
            "this link is not valid",
        );
    }
    if link.expired(files.clock.now()) {
        return refused(
            StatusCode::FORBIDDEN,
            "download_link_expired",
            "this link has expired: open the conversation again for a new one",
        );
    }
    let Some((bytes, _)) = files.objects().get(&key).cloned() else {
        return refused(
            StatusCode::NOT_FOUND,
            "no_file",
            "no such file (or it was deleted)",
        );
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_DISPOSITION, disposition),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (header::CACHE_CONTROL, "private, max-age=900".to_owned()),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; sandbox".to_owned(),
            ),
        ],
        bytes,
    )
        .into_response()
}
