//! A file that goes with a result: a check's chart, a diagnosis's long output. A leaf module, so
//! `check` and `runbook` can hand files up without knowing about chat, and every chat adapter
//! (and `firebell run --save`) takes the same type.

/// A file posted into a thread (or written by `firebell run --save`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileAttachment {
    pub filename: String,
    pub title: String,
    pub content: Vec<u8>,
}

impl FileAttachment {
    /// The media type of the file, from its extension (text unless it names something else).
    pub fn content_type(&self) -> &'static str {
        content_type(&self.filename)
    }

    /// Whether a platform can show the file as a picture.
    pub fn is_image(&self) -> bool {
        self.content_type().starts_with("image/")
    }
}

/// The media type of a file named `filename`, from its extension.
pub fn content_type(filename: &str) -> &'static str {
    match filename.rsplit_once('.').map(|(_, extension)| extension.to_ascii_lowercase()).as_deref() {
        Some("png") => "image/png",
        Some("json") => "application/json",
        Some("txt" | "log" | "out" | "md" | "csv") => "text/plain",
        _ => "application/octet-stream",
    }
}
