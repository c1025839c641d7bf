//! Records as `.sync.txt` files, readable by the WhiteBalloon app and lossless for wb.
//!
//! Headers, in order: `Entity`, `ID`, `Instance` (optional), `Schema-Version: 1`, `Updated-At`,
//! `Sync-Scope`, the record's fields in order, then the headers the app ignores: `Origin`,
//! `Version`, `Deleted`, `Signature` (when signed), `Description-Lines` (when needed) and
//! `Escaped` (when needed). A request's body is `Description:` and the description, optionally
//! followed by `Comments:` and the app's comment blocks; other bodies are written as they are.
//! A non-empty body is followed by one `\n` that is not part of it (the app's files end so).
//!
//! Escaping, so that `file_to_record(parse(write(record_to_file(r))))` gives `r` back for every
//! record `validate` accepts (within [`MAX_RECORD_LEN`]; an `Entity::Other` holding a known name
//! reads back as that entity, as in the canonical bytes) while the app, which strips values and
//! splits at the first `:`, reads every ordinary value unchanged:
//! - A value is written as-is unless it holds a control character other than tab, U+2028/U+2029,
//!   or whitespace at either end. Then `%`, those characters and the end whitespace are written
//!   as `%XX` (UTF-8 bytes) and the header's name is listed in `Escaped: Name1, Name2` (`%` and
//!   `,` in a listed name written `%25`, `%2C`). Values not listed are never decoded.
//! - A field named `Instance`, `Escaped` or `Description-Lines` (headers this codec owns) or
//!   starting with `%` is written with its first character (and any `%`) as `%XX`: every header
//!   name starting with `%` is an escaped field name.
//! - When reading the description back the app's way (text before the first `\nComments:\n`,
//!   `Description:` removed, whitespace stripped) would not give it exactly, `Description-Lines`
//!   says how many lines it has.
//!
//! `Instance` is the file writer's instance label (the app writes its site URL), not record
//! content: a relayed record keeps its origin but is re-exported under another label, and a
//! signed record must read back with the bytes its origin signed. So it is surfaced as
//! [`ParsedRecord::instance`], never as a field.

use std::collections::HashSet;

use crate::entity::RESERVED_FIELD_NAMES;
use crate::record::MAX_RECORD_LEN;
use crate::{Entity, PublicKey, Record, Scope, Signature, Version};

use super::app_file::{app_comment_text, app_value};
use super::escape::{
    decode_name_list, encode_name_list, escape_name, escape_value, py_rstrip, py_splitlines,
    py_strip, unescape_name, universal_newlines, value_needs_escape,
};
use super::{CodecError, MAX_SYNC_FILE_LEN, SyncFile, check_len, parse_bytes, write};
use crate::time::{format_timestamp, parse_timestamp};

/// The `Schema-Version` this codec writes and reads.
pub const SCHEMA_VERSION: &str = "1";

const ENTITY: &str = "Entity";
const ID: &str = "ID";
const INSTANCE: &str = "Instance";
const SCHEMA: &str = "Schema-Version";
const UPDATED_AT: &str = "Updated-At";
const SYNC_SCOPE: &str = "Sync-Scope";
const ORIGIN: &str = "Origin";
const VERSION: &str = "Version";
const DELETED: &str = "Deleted";
const SIGNATURE: &str = "Signature";
const DESCRIPTION_LINES: &str = "Description-Lines";
const ESCAPED: &str = "Escaped";

const DESCRIPTION_PREFIX: &str = "Description:\n";
const COMMENTS_MARKER: &str = "\nComments:\n";

/// How [`record_to_file`] writes a record beyond the record itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct RecordFileOptions<'a> {
    /// The `Instance` header: the writing instance's label (the app writes its site URL).
    pub instance: Option<&'a str>,
    /// Comments rendered into a request's body the way the app writes them, in this order, so
    /// the app's import sees them (§8). The caller picks them (public, not deleted, this
    /// request's); ignored for other entities. They are for the app only: reading a wb-written
    /// file back does not return them (the comments' own files are authoritative).
    pub comments: &'a [Record],
}

/// A record read from a `.sync.txt` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedRecord {
    pub record: Record,
    /// The `Instance` header, if any.
    pub instance: Option<String>,
    /// Comments embedded in an app-written request body, as comment records of the same origin:
    /// id from `Comment-ID`, fields `Request` (the bare request id) and the block's other headers
    /// in order (`User-ID`, `Username`, `Created-At`), scope from its `Sync-Scope`, version from
    /// `Created-At` (else the request's), the text as body. Empty for wb-written files.
    pub comments: Vec<Record>,
    /// True when the file has none of `Origin`, `Version`, `Deleted`, `Signature`: written by the
    /// app, so the origin is the caller's default and the version comes from `Updated-At`.
    pub app_written: bool,
}

/// Maps a record to a file (see the module docs for the layout and escaping). Fails when the
/// record's canonical form exceeds [`MAX_RECORD_LEN`], when a field name cannot be a header
/// (empty, with `:`, a line break or whitespace at either end) or collides with another header,
/// or when the file would exceed [`MAX_SYNC_FILE_LEN`].
pub fn record_to_file(
    record: &Record,
    options: &RecordFileOptions<'_>,
) -> Result<SyncFile, CodecError> {
    check_len("record", record.signing_bytes().len(), MAX_RECORD_LEN)?;
    let mut headers: Vec<(String, String)> = Vec::with_capacity(record.fields.len() + 12);
    let mut push = |name: &str, value: &str| headers.push((name.to_string(), value.to_string()));
    push(ENTITY, record.entity.as_str());
    push(ID, &record.id);
    if let Some(instance) = options.instance {
        push(INSTANCE, instance);
    }
    push(SCHEMA, SCHEMA_VERSION);
    push(UPDATED_AT, &format_timestamp(record.version.ms));
    push(SYNC_SCOPE, record.scope.as_str());
    for (name, value) in &record.fields {
        let written = escape_name(name);
        if RESERVED_FIELD_NAMES.contains(&written.as_ref()) {
            return Err(CodecError::Unwritable {
                name: name.clone(),
                reason: "a field cannot use a reserved header name",
            });
        }
        push(&written, value);
    }
    push(ORIGIN, &record.origin.to_base64());
    push(VERSION, &record.version.to_string());
    push(DELETED, if record.deleted { "yes" } else { "no" });
    if let Some(signature) = &record.signature {
        push(SIGNATURE, &signature.to_base64());
    }
    let body = if record.entity == Entity::Request {
        let (body, description_lines) = render_request_body(&record.body, options.comments);
        if let Some(lines) = description_lines {
            push(DESCRIPTION_LINES, &lines.to_string());
        }
        body
    } else if record.body.is_empty() {
        String::new()
    } else {
        format!("{}\n", record.body)
    };
    let mut escaped = Vec::new();
    for (name, value) in headers.iter_mut() {
        if value_needs_escape(value) {
            *value = escape_value(value);
            escaped.push(name.clone());
        }
    }
    if !escaped.is_empty() {
        let list = encode_name_list(escaped.iter().map(String::as_str));
        headers.push((ESCAPED.to_string(), list));
    }
    let file = SyncFile::new(headers, body).map_err(|e| match e {
        CodecError::DuplicateHeader { name, .. } => CodecError::Unwritable {
            name,
            reason: "field given twice",
        },
        other => other,
    })?;
    check_len(".sync.txt file", file.written_len(), MAX_SYNC_FILE_LEN)?;
    Ok(file)
}

/// [`record_to_file`] then [`write`](fn@write).
pub fn write_record(
    record: &Record,
    options: &RecordFileOptions<'_>,
) -> Result<String, CodecError> {
    Ok(write(&record_to_file(record, options)?))
}

/// [`parse_bytes`] then [`file_to_record`].
pub fn read_record(bytes: &[u8], default_origin: &PublicKey) -> Result<ParsedRecord, CodecError> {
    file_to_record(&parse_bytes(bytes)?, default_origin)
}

/// Maps a file back to a record (the inverse of [`record_to_file`]); reads app-written files too.
///
/// `Entity`, `ID` and `Sync-Scope` are required; `Schema-Version`, when present, must be `1`.
/// Without `Origin` the origin is `default_origin` (the bundle's signer); without `Version` the
/// version is `Updated-At` in milliseconds with counter 0. Other headers become fields, in order.
/// Entity rules (required fields, statuses) are not checked here: see [`crate::validate`].
pub fn file_to_record(
    file: &SyncFile,
    default_origin: &PublicKey,
) -> Result<ParsedRecord, CodecError> {
    let headers = file.headers();
    let escaped = escaped_names(file)?;
    let mut meta = Meta::default();
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut field_names = HashSet::new();
    for (i, (name, raw)) in headers.iter().enumerate() {
        let line = i + 1;
        if name == ESCAPED {
            continue;
        }
        let value = if escaped.contains(name.as_str()) {
            super::escape::percent_decode(raw).map_err(|reason| bad(line, name, raw, reason))?
        } else {
            raw.clone()
        };
        if meta.take(line, name, value.clone())? {
            continue;
        }
        let field = unescape_name(name).map_err(|reason| bad(line, name, raw, reason))?;
        if !field_names.insert(field.to_string()) {
            return Err(CodecError::DuplicateHeader {
                line,
                name: field.into_owned(),
            });
        }
        fields.push((field.into_owned(), value));
    }

    let (_, entity) = meta
        .entity
        .ok_or(CodecError::MissingHeader { name: ENTITY })?;
    let entity = Entity::from_name(&entity);
    let (_, id) = meta.id.ok_or(CodecError::MissingHeader { name: ID })?;
    let (_, scope) = meta
        .scope
        .ok_or(CodecError::MissingHeader { name: SYNC_SCOPE })?;
    let app_written = meta.origin.is_none()
        && meta.version.is_none()
        && meta.deleted.is_none()
        && meta.signature.is_none();
    let origin = meta.origin.unwrap_or(*default_origin);
    let version = match meta.version {
        Some(version) => version,
        None => {
            let (line, text) = meta
                .updated_at
                .ok_or(CodecError::MissingHeader { name: UPDATED_AT })?;
            let ms = parse_timestamp(&text).ok_or_else(|| {
                bad(
                    line,
                    UPDATED_AT,
                    &text,
                    "expected an ISO 8601 time such as 2025-11-03T14:05:09Z",
                )
            })?;
            Version::new(ms, 0)
        }
    };

    // The app's reader sees text-mode (universal newline) bodies; wb's files are verbatim.
    let text = if app_written {
        universal_newlines(file.body())
    } else {
        std::borrow::Cow::Borrowed(file.body())
    };
    let mut comments = Vec::new();
    let body = if entity == Entity::Request {
        let split = match meta.description_lines {
            Some((line, lines)) => exact_request_split(body_content(&text), lines)
                .map_err(|reason| CodecError::BadBody { line, reason })?,
            None => app_request_split(&text),
        };
        if app_written && let Some((offset, section)) = split.comments {
            let first_line =
                file.body_first_line() + text[..offset].bytes().filter(|&b| b == b'\n').count();
            comments = parse_comment_blocks(section, first_line, &id, origin, version)?;
        }
        split.description
    } else {
        body_content(&text).to_string()
    };

    let record = Record {
        origin,
        entity,
        id,
        version,
        scope,
        deleted: meta.deleted.unwrap_or(false),
        fields,
        body,
        signature: meta.signature,
    };
    check_len("record", record.signing_bytes().len(), MAX_RECORD_LEN)?;
    Ok(ParsedRecord {
        record,
        instance: meta.instance,
        comments,
        app_written,
    })
}

/// Metadata headers of a file, as read so far.
#[derive(Default)]
struct Meta {
    entity: Option<(usize, String)>,
    id: Option<(usize, String)>,
    instance: Option<String>,
    updated_at: Option<(usize, String)>,
    scope: Option<(usize, Scope)>,
    origin: Option<PublicKey>,
    version: Option<Version>,
    deleted: Option<bool>,
    signature: Option<Signature>,
    description_lines: Option<(usize, usize)>,
}

impl Meta {
    /// Takes a metadata header; false when `name` is a field.
    fn take(&mut self, line: usize, name: &str, value: String) -> Result<bool, CodecError> {
        match name {
            ENTITY => self.entity = Some((line, value)),
            ID => self.id = Some((line, value)),
            INSTANCE => self.instance = Some(value),
            SCHEMA => {
                if value != SCHEMA_VERSION {
                    return Err(CodecError::UnsupportedSchemaVersion { line, value });
                }
            }
            UPDATED_AT => self.updated_at = Some((line, value)),
            SYNC_SCOPE => {
                let scope = value
                    .parse()
                    .map_err(|_| bad(line, name, &value, "expected private, trusted or public"))?;
                self.scope = Some((line, scope));
            }
            ORIGIN => {
                let key = PublicKey::parse(&value)
                    .map_err(|_| bad(line, name, &value, "expected a base64 public key"))?;
                self.origin = Some(key);
            }
            VERSION => {
                let version = value
                    .parse()
                    .map_err(|_| bad(line, name, &value, "expected <milliseconds>-<counter>"))?;
                self.version = Some(version);
            }
            DELETED => {
                let deleted = match value.to_ascii_lowercase().as_str() {
                    "yes" | "true" => true,
                    "no" | "false" => false,
                    _ => return Err(bad(line, name, &value, "expected yes or no")),
                };
                self.deleted = Some(deleted);
            }
            SIGNATURE => {
                let signature = Signature::from_base64(&value).ok_or_else(|| {
                    bad(line, name, &value, "expected a base64 Ed25519 signature")
                })?;
                self.signature = Some(signature);
            }
            DESCRIPTION_LINES => {
                let lines = value
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0 && value.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| bad(line, name, &value, "expected a positive line count"))?;
                self.description_lines = Some((line, lines));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

fn bad(line: usize, name: &str, value: &str, reason: &'static str) -> CodecError {
    CodecError::BadHeaderValue {
        line,
        name: name.to_string(),
        value: value.to_string(),
        reason,
    }
}

/// The header names listed in `Escaped`; each must be another header of the file.
fn escaped_names(file: &SyncFile) -> Result<HashSet<String>, CodecError> {
    let Some(line) = file.headers().iter().position(|(n, _)| n == ESCAPED) else {
        return Ok(HashSet::new());
    };
    let value = file.headers()[line].1.as_str();
    let line = line + 1;
    let names = decode_name_list(value).map_err(|reason| bad(line, ESCAPED, value, reason))?;
    let present: HashSet<&str> = file.headers().iter().map(|(n, _)| n.as_str()).collect();
    let mut set = HashSet::with_capacity(names.len());
    for name in names {
        if name == ESCAPED || !present.contains(name.as_str()) {
            return Err(bad(
                line,
                ESCAPED,
                value,
                "lists a header the file does not have",
            ));
        }
        if !set.insert(name) {
            return Err(bad(line, ESCAPED, value, "lists a header twice"));
        }
    }
    Ok(set)
}

/// A body's content: the text without the one `\n` that ends a non-empty body.
fn body_content(text: &str) -> &str {
    text.strip_suffix('\n').unwrap_or(text)
}

struct RequestSplit<'a> {
    description: String,
    /// The comments section (after `Comments:\n`) and its byte offset in the body text.
    comments: Option<(usize, &'a str)>,
}

/// The app's reading of a request body: the description is the text before the first
/// `\nComments:\n`, without a leading `Description:\n`, stripped of whitespace.
fn app_request_split(text: &str) -> RequestSplit<'_> {
    let (description, comments) = match text.find(COMMENTS_MARKER) {
        Some(at) => {
            let start = at + COMMENTS_MARKER.len();
            (&text[..at], Some((start, &text[start..])))
        }
        None => (text, None),
    };
    let description = description
        .strip_prefix(DESCRIPTION_PREFIX)
        .unwrap_or(description);
    RequestSplit {
        description: py_strip(description).to_string(),
        comments,
    }
}

/// The exact reading under `Description-Lines: n`: `Description:\n`, then `n` lines of
/// description, then nothing or `\n\nComments:\n` and the comments.
fn exact_request_split(content: &str, lines: usize) -> Result<RequestSplit<'_>, &'static str> {
    let rest = content
        .strip_prefix(DESCRIPTION_PREFIX)
        .ok_or("Description-Lines is given but the body does not start with `Description:`")?;
    let mut end = 0;
    for _ in 1..lines {
        let newline = rest[end..]
            .find('\n')
            .ok_or("the description has fewer lines than Description-Lines says")?;
        end += newline + 1;
    }
    end += rest[end..].find('\n').unwrap_or(rest.len() - end);
    let description = rest[..end].to_string();
    let remainder = &rest[end..];
    if remainder.is_empty() {
        return Ok(RequestSplit {
            description,
            comments: None,
        });
    }
    let section = remainder
        .strip_prefix("\n\nComments:\n")
        .ok_or("the description has more lines than Description-Lines says")?;
    let offset = DESCRIPTION_PREFIX.len() + end + "\n\nComments:\n".len();
    Ok(RequestSplit {
        description,
        comments: Some((offset, section)),
    })
}

/// Renders a request body as the app does, or, when the app's reading would not give the
/// description back exactly, in the exact layout with its line count.
fn render_request_body(description: &str, comments: &[Record]) -> (String, Option<usize>) {
    let mut lines: Vec<String> = vec!["Description:".into(), description.into(), String::new()];
    if !comments.is_empty() {
        lines.push("Comments:".into());
        for comment in comments {
            render_comment(comment, &mut lines);
        }
    }
    let app = format!("{}\n", py_rstrip(&lines.join("\n")));
    if app_request_split(&app).description == description {
        return (app, None);
    }
    let mut exact = format!("{DESCRIPTION_PREFIX}{description}");
    if lines.len() > 3 {
        exact.push_str("\n\n");
        exact.push_str(py_rstrip(&lines[3..].join("\n")));
    }
    exact.push('\n');
    (exact, Some(description.split('\n').count()))
}

/// One comment block as the app writes it. Values are made single-line and text lines that
/// would read as a block separator are defused: the app's view only, never read back by wb.
fn render_comment(comment: &Record, lines: &mut Vec<String>) {
    let field = |name: &str| app_value(comment.field(name).unwrap_or_default());
    lines.push("---".into());
    lines.push(format!("Comment-ID: {}", app_value(&comment.id)));
    lines.push(format!("User-ID: {}", field("User-ID")));
    lines.push(format!("Username: {}", field("Username")));
    // The app parses this as a date: a comment without one shows its version's time.
    let created_at = field("Created-At");
    let created_at = if created_at.is_empty() {
        format_timestamp(comment.version.ms)
    } else {
        created_at
    };
    lines.push(format!("Created-At: {created_at}"));
    lines.push(format!("Sync-Scope: {}", comment.scope));
    lines.push(String::new());
    lines.push(app_comment_text(&comment.body));
    lines.push(String::new());
}

/// One comment block of an app-written request body.
struct CommentBlock<'a> {
    line: usize,
    headers: Vec<(usize, &'a str, &'a str)>,
    text: Vec<&'a str>,
}

/// Reads the comments section the way the app does: a `---` line opens a block, `Name: value`
/// lines up to an empty line are its headers (lines without `:` are skipped), the rest up to
/// the next `---` is its text, stripped.
fn parse_comment_blocks(
    section: &str,
    first_line: usize,
    request_id: &str,
    origin: PublicKey,
    request_version: Version,
) -> Result<Vec<Record>, CodecError> {
    let mut blocks: Vec<CommentBlock<'_>> = Vec::new();
    let mut in_headers = false;
    for (n, (_, line)) in py_splitlines(section).into_iter().enumerate() {
        let line_no = first_line + n;
        if py_strip(line) == "---" {
            blocks.push(CommentBlock {
                line: line_no,
                headers: Vec::new(),
                text: Vec::new(),
            });
            in_headers = true;
            continue;
        }
        let Some(block) = blocks.last_mut() else {
            continue;
        };
        if in_headers {
            if py_strip(line).is_empty() {
                in_headers = false;
            } else if let Some((name, value)) = line.split_once(':') {
                block
                    .headers
                    .push((line_no, py_strip(name), py_strip(value)));
            }
        } else {
            block.text.push(line);
        }
    }
    let mut ids = HashSet::new();
    let mut comments = Vec::with_capacity(blocks.len());
    for block in blocks {
        let line = block.line;
        let comment = comment_record(block, request_id, origin, request_version)?;
        if !ids.insert(comment.id.clone()) {
            return Err(CodecError::BadBody {
                line,
                reason: "Comment-ID given twice",
            });
        }
        comments.push(comment);
    }
    Ok(comments)
}

fn comment_record(
    block: CommentBlock<'_>,
    request_id: &str,
    origin: PublicKey,
    request_version: Version,
) -> Result<Record, CodecError> {
    let mut id = None;
    let mut scope = None;
    let mut version = request_version;
    let mut fields = vec![("Request".to_string(), request_id.to_string())];
    let mut seen = HashSet::new();
    for &(line, name, value) in &block.headers {
        let key = name.to_ascii_lowercase();
        if !seen.insert(key.clone()) {
            return Err(CodecError::DuplicateHeader {
                line,
                name: name.to_string(),
            });
        }
        match key.as_str() {
            "comment-id" => id = Some(value.to_string()),
            "sync-scope" => {
                scope =
                    Some(value.parse().map_err(|_| {
                        bad(line, name, value, "expected private, trusted or public")
                    })?);
            }
            _ => {
                if key == "created-at"
                    && let Some(ms) = parse_timestamp(value)
                {
                    version = Version::new(ms, 0);
                }
                fields.push((name.to_string(), value.to_string()));
            }
        }
    }
    let id = id.filter(|id| !id.is_empty()).ok_or(CodecError::BadBody {
        line: block.line,
        reason: "comment without a Comment-ID",
    })?;
    let scope = scope.ok_or(CodecError::BadBody {
        line: block.line,
        reason: "comment without a Sync-Scope",
    })?;
    Ok(Record {
        origin,
        entity: Entity::Comment,
        id,
        version,
        scope,
        deleted: false,
        fields,
        body: py_strip(&block.text.join("\n")).to_string(),
        signature: None,
    })
}
