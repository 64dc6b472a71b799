//! The file store on S3: the stack's private bucket (`FILES_BUCKET`). Links are the SDK's presigned
//! requests, signed with the function's own credentials: a `PUT` with its type and length fixed, a
//! `GET` with the type and `Content-Disposition` S3 is to answer with.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::config::RequestChecksumCalculation;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;

use super::{Download, FileError, FileStore, StoredFile, UploadRequest};

pub struct S3Files {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Files {
    /// `path_style`: the bucket in the path rather than the host name, for an S3-compatible server
    /// at an endpoint of its own (`AWS_ENDPOINT_URL_S3`).
    pub fn new(sdk: &aws_config::SdkConfig, bucket: &str, path_style: bool) -> Self {
        let config = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(path_style)
            // A checksum "when supported" would stream a PUT's body in aws-chunked encoding, and put a
            // checksum of no bytes into every presigned upload.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .build();
        Self {
            client: aws_sdk_s3::Client::from_conf(config),
            bucket: bucket.to_owned(),
        }
    }
}

fn unavailable(err: impl std::error::Error + 'static) -> FileError {
    FileError::Unavailable(crate::telemetry::ErrorChain(&err).to_string())
}

fn presigning(ttl: Duration) -> Result<PresigningConfig, FileError> {
    PresigningConfig::expires_in(ttl).map_err(unavailable)
}

#[async_trait]
impl FileStore for S3Files {
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), FileError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get(&self, key: &str, max_bytes: usize) -> Result<Option<StoredFile>, FileError> {
        let asked = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            // One byte past the limit is enough to refuse a file that is too large.
            .range(format!("bytes=0-{max_bytes}"))
            .send()
            .await;
        let object = match asked {
            Ok(object) => object,
            Err(err) => {
                let status = err.raw_response().map(|r| r.status().as_u16());
                return match status {
                    Some(404) => Ok(None),
                    // A range of an empty object cannot be satisfied: the object is there, empty.
                    Some(416) => Ok(Some(StoredFile {
                        bytes: Vec::new(),
                        content_type: None,
                    })),
                    _ => Err(unavailable(err)),
                };
            }
        };
        let content_type = object.content_type.clone();
        let bytes = object
            .body
            .collect()
            .await
            .map_err(unavailable)?
            .into_bytes()
            .to_vec();
        Ok(Some(StoredFile {
            bytes,
            content_type,
        }))
    }

    async fn delete(&self, key: &str) -> Result<(), FileError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn upload_url(
        &self,
        key: &str,
        content_type: &str,
        size: u64,
        ttl: Duration,
    ) -> Result<UploadRequest, FileError> {
        let length = i64::try_from(size).map_err(|_| FileError::Unavailable("size".into()))?;
        let presigned = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .content_length(length)
            .presigned(presigning(ttl)?)
            .await
            .map_err(unavailable)?;
        Ok(UploadRequest {
            url: presigned.uri().to_owned(),
            headers: presigned
                .headers()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
        })
    }

    async fn download_url(
        &self,
        key: &str,
        download: &Download<'_>,
        ttl: Duration,
    ) -> Result<String, FileError> {
        let presigned = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .response_content_type(download.content_type)
            .response_content_disposition(download.disposition())
            .response_cache_control("private, max-age=900")
            .presigned(presigning(ttl)?)
            .await
            .map_err(unavailable)?;
        Ok(presigned.uri().to_owned())
    }
}
