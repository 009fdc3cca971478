//! What `history export` takes from other people's events: `EncryptedFile` JSON, downloaded
//! attachment bytes, `formatted_body` HTML and `mxc://` URIs.
//!
//! The first byte picks the mode, the rest is the input:
//! - 0: `EncryptedFile::from_slice` on any bytes; an accepted object decrypts nothing whose
//!   hash differs (the empty input and the input itself, unless their SHA-256 is the one given);
//! - 1: the rest is a downloaded ciphertext for the `pixel.png` fixture's `EncryptedFile`:
//!   refused with `HashMismatch` unless it is the fixture's own ciphertext, which decrypts to
//!   the fixture's plaintext;
//! - 2: the rest (as UTF-8, lossily) is a `formatted_body`: the sanitised HTML has only the
//!   spec's tags, no event handler or style attribute, links only of the allowed schemes, images
//!   only of saved media;
//! - 3: the rest is an `mxc://` URI: an accepted one names no path outside the media id.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use mxkeys::history::export::html::sanitize;
use mxkeys::history::export::media::parse_mxc;
use mxkeys::room::attachment::{AttachmentError, EncryptedFile};

const PIXEL_FILE: &str = include_str!("../../fixtures/attachment/pixel.png.file.json");
const PIXEL_ENC: &[u8] = include_bytes!("../../fixtures/attachment/pixel.png.enc");
const PIXEL: &[u8] = include_bytes!("../../fixtures/attachment/pixel.png");

/// The tags the spec allows (and ammonia's serialiser may add none).
const ALLOWED: &[&str] = &[
    "font",
    "del",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "p",
    "a",
    "ul",
    "ol",
    "sup",
    "sub",
    "li",
    "b",
    "i",
    "u",
    "strong",
    "em",
    "strike",
    "code",
    "hr",
    "br",
    "div",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "caption",
    "pre",
    "span",
    "img",
    "details",
    "summary",
];

/// The start tags of serialised HTML (text never holds a raw `<`): name and attributes.
fn tags(html: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        if rest.starts_with('/') {
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        rest = &rest[name.len()..];
        let mut attrs = Vec::new();
        loop {
            rest = rest.trim_start();
            if rest.starts_with('>') || rest.is_empty() {
                break;
            }
            let attr: String = rest
                .chars()
                .take_while(|c| !matches!(c, '=' | '>' | ' '))
                .collect();
            rest = &rest[attr.len()..];
            let mut value = String::new();
            if let Some(r) = rest.strip_prefix("=\"") {
                let end = r.find('"').unwrap_or(r.len());
                value = r[..end].replace("&amp;", "&").replace("&quot;", "\"");
                rest = r.get(end + 1..).unwrap_or("");
            }
            attrs.push((attr.to_ascii_lowercase(), value));
        }
        out.push((name.to_ascii_lowercase(), attrs));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            if let Ok(f) = EncryptedFile::from_slice(rest) {
                for ct in [&b""[..], rest] {
                    match f.decrypt(ct) {
                        Ok(pt) => {
                            assert!(f.hash_matches(ct));
                            assert_eq!(pt.len(), ct.len());
                        }
                        Err(e) => assert_eq!(e, AttachmentError::HashMismatch),
                    }
                }
            }
        }
        1 => {
            let f = EncryptedFile::from_slice(PIXEL_FILE.as_bytes()).expect("fixture");
            match f.decrypt(rest) {
                Ok(pt) => {
                    assert_eq!(rest, PIXEL_ENC);
                    assert_eq!(pt.as_slice(), PIXEL);
                }
                Err(e) => assert_eq!(e, AttachmentError::HashMismatch),
            }
        }
        2 => {
            let html = String::from_utf8_lossy(rest);
            let saved = HashMap::from([("mxc://example.org/ok".to_owned(), "media/ok".to_owned())]);
            let clean = sanitize(&html, &saved);
            for (name, attrs) in tags(&clean) {
                assert!(ALLOWED.contains(&name.as_str()), "tag {name} in {clean}");
                for (attr, value) in attrs {
                    assert!(
                        !attr.starts_with("on") && attr != "style",
                        "{attr} in {clean}"
                    );
                    // As a URL parser reads it: leading controls and spaces, tabs and
                    // newlines do not count.
                    let v: String = value
                        .trim_start_matches(|c: char| c <= ' ')
                        .chars()
                        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
                        .collect::<String>()
                        .to_ascii_lowercase();
                    if attr == "href" {
                        assert!(
                            v == "media/ok"
                                || ["http:", "https:", "ftp:", "mailto:", "magnet:"]
                                    .iter()
                                    .any(|s| v.starts_with(s)),
                            "href {value} in {clean}"
                        );
                    }
                    if attr == "src" {
                        assert_eq!(value, "media/ok", "src in {clean}");
                    }
                }
            }
            // Checking the tokens is enough: a browser's tree building may move or repeat
            // them (nested links, tables), never make a tag or an attribute that is not there.
        }
        _ => {
            if let Ok(s) = std::str::from_utf8(rest)
                && let Ok((server, id)) = parse_mxc(s)
            {
                assert!(!server.is_empty() && !id.is_empty());
                assert!(!id.contains('/') && !id.contains('.'));
            }
        }
    }
});
