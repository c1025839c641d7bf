//! The `.sync.txt` codec (§8): a file is `Name: value` header lines, one empty line, then the
//! body. [`parse`]/[`write`](fn@write) handle that layout; [`record_to_file`]/[`file_to_record`] map it to
//! and from [`Record`](crate::Record)s (the escaping scheme is described there). No I/O.

mod app_file;
mod error;
mod escape;
mod file_name;
mod record_file;

#[cfg(test)]
mod tests;

use std::collections::HashSet;

pub use crate::time::{format_timestamp, parse_timestamp};
pub use app_file::{
    AppComment, app_comment_text, app_description, app_request_body, app_value, write_app_file,
};
pub use error::CodecError;
pub use file_name::safe_file_name;
pub use record_file::{
    ParsedRecord, RecordFileOptions, SCHEMA_VERSION, file_to_record, read_record, record_to_file,
    write_record,
};

use escape::py_strip;

/// Largest `.sync.txt` file read or written, checked before any other work. A record's canonical
/// form is at most [`MAX_RECORD_LEN`](crate::record::MAX_RECORD_LEN); escaping can triple a
/// value, and a request may carry its comments.
pub const MAX_SYNC_FILE_LEN: usize = 8 * 1024 * 1024;

/// One `.sync.txt` file: ordered headers (unique names) and the body, exactly as the file holds
/// them. Header names and values are single-line and carry no leading or trailing whitespace, so
/// `parse(&write(&f)) == Ok(f)` for every `SyncFile`; [`SyncFile::new`] enforces that.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncFile {
    headers: Vec<(String, String)>,
    body: String,
}

impl SyncFile {
    /// Builds a file, refusing headers that could not be written and read back unchanged:
    /// empty names, names with `:`, a line break or whitespace at either end, values with a line
    /// break or whitespace at either end, and names given twice.
    pub fn new(headers: Vec<(String, String)>, body: String) -> Result<Self, CodecError> {
        let mut seen = HashSet::with_capacity(headers.len());
        for (i, (name, value)) in headers.iter().enumerate() {
            if let Some(reason) = name_problem(name) {
                return Err(CodecError::Unwritable {
                    name: name.clone(),
                    reason,
                });
            }
            if value.contains(['\n', '\r']) {
                return Err(CodecError::Unwritable {
                    name: name.clone(),
                    reason: "value spans lines",
                });
            }
            if py_strip(value).len() != value.len() {
                return Err(CodecError::Unwritable {
                    name: name.clone(),
                    reason: "value starts or ends with whitespace",
                });
            }
            if !seen.insert(name.as_str()) {
                return Err(CodecError::DuplicateHeader {
                    line: i + 1,
                    name: name.clone(),
                });
            }
        }
        Ok(Self { headers, body })
    }

    /// The headers, in file order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The value of a header, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Everything after the empty line, verbatim.
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The 1-based line number the body starts at: each header is one line, then the empty one.
    pub fn body_first_line(&self) -> usize {
        self.headers.len() + 2
    }

    pub fn into_parts(self) -> (Vec<(String, String)>, String) {
        (self.headers, self.body)
    }

    /// Length in bytes of [`write`](fn@write)'s output.
    pub fn written_len(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.len() + 2 + v.len() + 1)
            .sum();
        headers + 1 + self.body.len()
    }
}

fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty name")
    } else if name.contains(':') {
        Some("name contains `:`")
    } else if name.contains(['\n', '\r']) {
        Some("name spans lines")
    } else if py_strip(name).len() != name.len() {
        Some("name starts or ends with whitespace")
    } else {
        None
    }
}

/// Writes a file: `Name: value` per header (the app's layout, so an empty value is `Name: `),
/// an empty line, then the body verbatim.
pub fn write(file: &SyncFile) -> String {
    let mut out = String::with_capacity(file.written_len());
    for (name, value) in &file.headers {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&file.body);
    out
}

/// Parses a file's bytes: checks the size limit and UTF-8 (naming the line of the first bad
/// byte), then [`parse`].
pub fn parse_bytes(bytes: &[u8]) -> Result<SyncFile, CodecError> {
    check_len(".sync.txt file", bytes.len(), MAX_SYNC_FILE_LEN)?;
    parse(to_utf8(bytes)?)
}

/// Parses a file. Header lines run up to the first empty line; each is `Name: value`, split at
/// the first `:`, both sides stripped of whitespace as the app's reader does. A `\r` before the
/// `\n` of a header line is dropped (CRLF files); the body is kept verbatim.
pub fn parse(text: &str) -> Result<SyncFile, CodecError> {
    check_len(".sync.txt file", text.len(), MAX_SYNC_FILE_LEN)?;
    let mut headers = Vec::new();
    let mut seen = HashSet::new();
    let mut rest = text;
    let mut line = 0;
    loop {
        line += 1;
        let Some(end) = rest.find('\n') else {
            return Err(CodecError::MissingSeparator { line });
        };
        let raw = &rest[..end];
        rest = &rest[end + 1..];
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.is_empty() {
            break;
        }
        let (name, value) = split_header_line(raw, line)?;
        if !seen.insert(name) {
            return Err(CodecError::DuplicateHeader {
                line,
                name: name.to_string(),
            });
        }
        headers.push((name.to_string(), value.to_string()));
    }
    Ok(SyncFile {
        headers,
        body: rest.to_string(),
    })
}

/// Splits `Name: value` at the first `:` and strips both sides.
fn split_header_line(raw: &str, line: usize) -> Result<(&str, &str), CodecError> {
    if raw.contains('\r') {
        return Err(CodecError::MalformedHeader {
            line,
            reason: "carriage return inside the line",
        });
    }
    let Some((name, value)) = raw.split_once(':') else {
        return Err(CodecError::MalformedHeader {
            line,
            reason: "expected `Name: value`",
        });
    };
    let name = py_strip(name);
    if name.is_empty() {
        return Err(CodecError::MalformedHeader {
            line,
            reason: "empty header name",
        });
    }
    Ok((name, py_strip(value)))
}

/// One header of a headers-only file (`bundle.sig`, `public_keys/*.pub`): line, name, value.
pub(crate) type HeaderLine = (usize, String, String);

/// Parses a headers-only file: `Name: value` lines, empty lines skipped (as the app's reader
/// does), names unique.
pub(crate) fn parse_header_lines(
    bytes: &[u8],
    what: &'static str,
    max: usize,
) -> Result<Vec<HeaderLine>, CodecError> {
    check_len(what, bytes.len(), max)?;
    let text = to_utf8(bytes)?;
    let mut out: Vec<HeaderLine> = Vec::new();
    let mut seen = HashSet::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = i + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if py_strip(raw).is_empty() {
            continue;
        }
        let (name, value) = split_header_line(raw, line)?;
        if !seen.insert(name) {
            return Err(CodecError::DuplicateHeader {
                line,
                name: name.to_string(),
            });
        }
        out.push((line, name.to_string(), value.to_string()));
    }
    Ok(out)
}

pub(crate) fn check_len(what: &'static str, len: usize, max: usize) -> Result<(), CodecError> {
    if len > max {
        Err(CodecError::TooLarge { what, len, max })
    } else {
        Ok(())
    }
}

pub(crate) fn to_utf8(bytes: &[u8]) -> Result<&str, CodecError> {
    std::str::from_utf8(bytes).map_err(|e| CodecError::InvalidUtf8 {
        line: 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count(),
    })
}
