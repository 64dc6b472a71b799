//! Files in a live conversation, checked the same way whoever sent them: the type from the file's
//! bytes (never its name or what its sender declared), an allow-list, a size, and a name that can
//! be shown and saved safely.

use serde::{Deserialize, Serialize};

/// The largest file either side may send. MSC posts an agent's files to us as Base64 inside one JSON
/// body, and a Lambda request payload is at most 6 MB (6,291,456 bytes): 4 MiB is 5,592,408 bytes of
/// Base64, which leaves the rest of the body and API Gateway's event around it room to fit.
pub const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;

/// The longest file name kept, in characters (its extension included).
pub const FILE_NAME_LIMIT_CHARS: usize = 100;

/// What is sent when no setting says otherwise: images, PDF and plain text.
pub const DEFAULT_FILE_TYPES: [&str; 6] = [
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
];

/// The types a page may show inline (a thumbnail): raster images. Everything else, SVG and HTML
/// above all, is only ever served as a download.
const INLINE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// The files a deployment carries (`FILE_TYPES`, `FILE_MAX_BYTES`). No types: files are off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRules {
    pub types: Vec<String>,
    pub max_bytes: usize,
}

impl Default for FileRules {
    fn default() -> Self {
        Self {
            types: DEFAULT_FILE_TYPES.iter().map(|t| (*t).to_owned()).collect(),
            max_bytes: MAX_FILE_BYTES,
        }
    }
}

impl FileRules {
    pub fn off() -> Self {
        Self {
            types: Vec::new(),
            max_bytes: 0,
        }
    }

    pub fn enabled(&self) -> bool {
        !self.types.is_empty()
    }

    /// What a declared upload may be, before a byte is sent: a type on the list, a size within it.
    pub fn admits_declared(&self, content_type: &str, size: u64) -> Result<(), FileRefused> {
        if !self.enabled() {
            return Err(FileRefused::Off);
        }
        if size == 0 {
            return Err(FileRefused::Empty);
        }
        if size > self.max_bytes as u64 {
            return Err(FileRefused::TooLarge {
                max_bytes: self.max_bytes,
            });
        }
        if !self.types.iter().any(|t| t == content_type) {
            return Err(FileRefused::TypeNotAllowed {
                found: content_type.to_owned(),
            });
        }
        Ok(())
    }

    /// The file's type from its bytes, if the rules allow it. `declared`: the type its sender said
    /// it is, which must agree.
    pub fn check(&self, bytes: &[u8], declared: Option<&str>) -> Result<String, FileRefused> {
        if !self.enabled() {
            return Err(FileRefused::Off);
        }
        if bytes.is_empty() {
            return Err(FileRefused::Empty);
        }
        if bytes.len() > self.max_bytes {
            return Err(FileRefused::TooLarge {
                max_bytes: self.max_bytes,
            });
        }
        let found = sniffed_type(bytes);
        if !self.types.contains(&found) {
            return Err(FileRefused::TypeNotAllowed { found });
        }
        if let Some(declared) = declared {
            if declared != found {
                return Err(FileRefused::TypeMismatch {
                    declared: declared.to_owned(),
                    found,
                });
            }
        }
        Ok(found)
    }
}

/// Why a file is not carried. Each names its reason to whoever sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileRefused {
    #[error("files are turned off for this service")]
    Off,
    #[error("the file is empty")]
    Empty,
    #[error("the file is larger than {max_bytes} bytes")]
    TooLarge { max_bytes: usize },
    #[error("the file's bytes are of type {found}, which is not allowed here")]
    TypeNotAllowed { found: String },
    #[error("the file was declared {declared} but its bytes are {found}")]
    TypeMismatch { declared: String, found: String },
    #[error("the file's name ends in .{extension}, but the file is {found}")]
    LyingExtension { extension: String, found: String },
    #[error("the file's name must be 1-{FILE_NAME_LIMIT_CHARS} characters without paths, control or direction characters")]
    BadName,
    #[error("the file's content is not Base64")]
    NotBase64,
}

impl FileRefused {
    /// The stable word for the reason, as responses and metrics carry it.
    pub fn reason(&self) -> &'static str {
        match self {
            FileRefused::Off => "files_off",
            FileRefused::Empty => "empty",
            FileRefused::TooLarge { .. } => "too_large",
            FileRefused::TypeNotAllowed { .. } => "type_not_allowed",
            FileRefused::TypeMismatch { .. } => "type_mismatch",
            FileRefused::LyingExtension { .. } => "lying_extension",
            FileRefused::BadName => "bad_name",
            FileRefused::NotBase64 => "not_base64",
        }
    }
}

/// The type the bytes are, by their magic numbers; text that is valid UTF-8 without control
/// characters is plain text unless it is markup (SVG, HTML and XML all start with `<`), which
/// no allow-list should mistake for text.
pub fn sniffed_type(bytes: &[u8]) -> String {
    if let Some(kind) = infer::get(bytes) {
        return kind.mime_type().to_owned();
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            let body = text.trim_start_matches('\u{feff}').trim_start();
            if body.starts_with('<') {
                "text/html".to_owned()
            } else if text
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
            {
                "application/octet-stream".to_owned()
            } else {
                "text/plain".to_owned()
            }
        }
        Err(_) => "application/octet-stream".to_owned(),
    }
}

/// Whether a page may show a file of this type in place (a thumbnail) rather than as a download.
pub fn shown_inline(content_type: &str) -> bool {
    INLINE_TYPES.contains(&content_type)
}

/// The extensions a type's file may carry; the first is what a name without one gets.
fn extensions(content_type: &str) -> &'static [&'static str] {
    match content_type {
        "image/png" => &["png"],
        "image/jpeg" => &["jpg", "jpeg", "jfif"],
        "image/gif" => &["gif"],
        "image/webp" => &["webp"],
        "application/pdf" => &["pdf"],
        "text/plain" => &["txt", "text", "log", "csv", "md"],
        _ => &[],
    }
}

/// Characters that reorder or hide text (bidi controls, zero-width marks): in a file name they make
/// `invoice\u{202e}fdp.exe` read as `invoiceexe.pdf`.
fn is_hidden_or_bidi(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// An end user's file name as its page declared it: a browser's `File.name` never holds a path,
/// a control or a direction character, so a name that does is refused, not repaired.
pub fn declared_name(raw: &str) -> Result<String, FileRefused> {
    let name = raw.trim();
    let hostile = name.contains(['/', '\\'])
        || name.starts_with('.')
        || name.chars().any(|c| c.is_control() || is_hidden_or_bidi(c));
    if name.is_empty() || hostile || name.chars().count() > FILE_NAME_LIMIT_CHARS {
        return Err(FileRefused::BadName);
    }
    Ok(name.to_owned())
}

/// A name that agrees with the file's type: its extension must be one of the type's, and a name
/// without one gets the type's first. Types without known extensions keep the name as it is.
pub fn name_for_type(name: &str, content_type: &str) -> Result<String, FileRefused> {
    let known = extensions(content_type);
    if known.is_empty() {
        return Ok(name.to_owned());
    }
    match name.rsplit_once('.') {
        Some((stem, extension)) if !stem.is_empty() => {
            let lower = extension.to_ascii_lowercase();
            if known.contains(&lower.as_str()) {
                Ok(name.to_owned())
            } else {
                Err(FileRefused::LyingExtension {
                    extension: lower.chars().take(16).collect(),
                    found: content_type.to_owned(),
                })
            }
        }
        _ => Ok(format!("{name}.{}", known[0])),
    }
}

/// An agent's file name as MSC sent it: cleaned rather than refused (the agent's file still reaches
/// the end user): the last path segment, without control or direction characters, cut to the limit
/// with its extension kept, and given the extension of what the file is.
pub fn cleaned_name(raw: &str, content_type: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let kept: String = last
        .chars()
        .filter(|c| !c.is_control() && !is_hidden_or_bidi(*c))
        .collect();
    let trimmed = kept.trim().trim_start_matches('.').trim();
    let base = if trimmed.is_empty() { "file" } else { trimmed };
    let typed = match name_for_type(base, content_type) {
        Ok(name) => name,
        // A name whose extension lies gets the right one added: `invoice.exe.pdf` says what it is.
        Err(_) => format!("{base}.{}", extensions(content_type)[0]),
    };
    shorten_keeping_extension(&typed)
}

fn shorten_keeping_extension(name: &str) -> String {
    if name.chars().count() <= FILE_NAME_LIMIT_CHARS {
        return name.to_owned();
    }
    let (stem, extension) = match name.rsplit_once('.') {
        Some((stem, ext)) if ext.chars().count() <= 16 => (stem, format!(".{ext}")),
        _ => (name, String::new()),
    };
    let room = FILE_NAME_LIMIT_CHARS - extension.chars().count();
    format!("{}{extension}", stem.chars().take(room).collect::<String>())
}

/// A file kept for the end user, as the outbox stores it: where it is, and what it is. The link to
/// it is made each time the outbox is read or pushed, never stored.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    pub key: String,
    pub name: String,
    #[serde(rename = "type")]
    pub content_type: String,
    pub size: u64,
}

/// The name is personal data: left out.
impl std::fmt::Debug for FileRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileRef")
            .field("content_type", &self.content_type)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    #[test]
    fn the_type_comes_from_the_bytes() {
        assert_eq!(sniffed_type(PNG), "image/png");
        assert_eq!(sniffed_type(b"%PDF-1.7\n"), "application/pdf");
        assert_eq!(sniffed_type(b"hello\nworld"), "text/plain");
        assert_eq!(
            sniffed_type(b"<svg xmlns='http://www.w3.org/2000/svg'><script>1</script></svg>"),
            "text/html"
        );
        assert_eq!(
            sniffed_type(b"MZ\x90\0"),
            "application/vnd.microsoft.portable-executable"
        );
        assert_eq!(sniffed_type(b"a\0b"), "application/octet-stream");
    }

    #[test]
    fn the_rules_refuse_with_a_reason() {
        let rules = FileRules::default();
        assert_eq!(rules.check(PNG, Some("image/png")), Ok("image/png".into()));
        assert_eq!(rules.check(b"", None).unwrap_err().reason(), "empty");
        assert_eq!(
            rules
                .check(b"%PDF-1.7", Some("image/png"))
                .unwrap_err()
                .reason(),
            "type_mismatch"
        );
        assert_eq!(
            rules
                .check(b"<svg><script/></svg>", None)
                .unwrap_err()
                .reason(),
            "type_not_allowed"
        );
        let small = FileRules {
            max_bytes: 4,
            ..FileRules::default()
        };
        assert_eq!(small.check(PNG, None).unwrap_err().reason(), "too_large");
        assert_eq!(
            FileRules::off().check(PNG, None).unwrap_err().reason(),
            "files_off"
        );
    }

    #[test]
    fn hostile_names_are_refused_and_agents_names_cleaned() {
        assert_eq!(declared_name(" photo.png "), Ok("photo.png".into()));
        for hostile in [
            "../etc/passwd",
            "a\\b.png",
            "invoice\u{202e}fdp.exe",
            ".htaccess",
            "a\nb",
            "",
        ] {
            assert_eq!(
                declared_name(hostile),
                Err(FileRefused::BadName),
                "{hostile:?}"
            );
        }
        assert_eq!(
            name_for_type("photo.exe", "image/png")
                .unwrap_err()
                .reason(),
            "lying_extension"
        );
        assert_eq!(name_for_type("photo", "image/png"), Ok("photo.png".into()));
        assert_eq!(
            name_for_type("Photo.JPG", "image/jpeg"),
            Ok("Photo.JPG".into())
        );
        assert_eq!(
            cleaned_name("../../x/invoice\u{202e}fdp.exe", "application/pdf"),
            "invoicefdp.exe.pdf"
        );
        let long = format!("{}.pdf", "a".repeat(300));
        let cut = cleaned_name(&long, "application/pdf");
        assert_eq!(cut.chars().count(), FILE_NAME_LIMIT_CHARS);
        assert!(cut.ends_with(".pdf"));
    }
}
