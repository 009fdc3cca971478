//! Media of exported events: which `mxc://` content an event points to (encrypted with an
//! `EncryptedFile`, or plain), fetching it through a [`Fetch`], checking and decrypting it, and
//! saving it (mode 0600, in a 0700 directory). A media item that fails is noted on its event
//! and reported; it never stops the export.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::Room;
use crate::fs::{Overwrite, atomic_write, create_private_dir};
use crate::progress::{self, Progress, Unit};
use crate::room::attachment::EncryptedFile;

/// Where one media item of an event is.
#[derive(Debug, Clone)]
pub enum MediaRef {
    /// `content.file`: an encrypted attachment.
    Encrypted(Box<EncryptedFile>),
    /// `content.url`: plain media.
    Plain(String),
    /// `content.file` that cannot be used.
    Bad(String),
}

impl MediaRef {
    /// The media of a message content (not thumbnails), if any.
    pub fn of(content: &Map<String, Value>) -> Option<MediaRef> {
        if let Some(f) = content.get("file") {
            return Some(match EncryptedFile::from_json(f) {
                Ok(f) => MediaRef::Encrypted(Box::new(f)),
                Err(e) => MediaRef::Bad(e.to_string()),
            });
        }
        content
            .get("url")
            .and_then(Value::as_str)
            .map(|u| MediaRef::Plain(u.to_owned()))
    }

    /// Do both name the same content (the same URI, and for encrypted media the same key)?
    pub fn same_as(&self, other: &MediaRef) -> bool {
        match (self, other) {
            (MediaRef::Encrypted(a), MediaRef::Encrypted(b)) => a.same_as(b),
            (MediaRef::Plain(a), MediaRef::Plain(b)) => a == b,
            _ => false,
        }
    }

    /// The `mxc://` URI.
    pub fn mxc(&self) -> Option<&str> {
        match self {
            MediaRef::Encrypted(f) => Some(&f.url),
            MediaRef::Plain(u) => Some(u),
            MediaRef::Bad(_) => None,
        }
    }
}

/// What became of one media item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaNote {
    /// The `mxc://` URI, when known.
    pub mxc: Option<String>,
    /// Where it was saved (as the output refers to it), or why not.
    pub outcome: Result<PathBuf, String>,
}

impl MediaNote {
    /// `{"mxc", "saved"}` or `{"mxc", "error"}`.
    pub fn to_json(&self) -> Value {
        match &self.outcome {
            Ok(p) => json!({"mxc": self.mxc, "saved": p.display().to_string()}),
            Err(e) => json!({"mxc": self.mxc, "error": e}),
        }
    }
}

/// A server name and media id, from `mxc://server/id`.
pub fn parse_mxc(uri: &str) -> Result<(&str, &str), String> {
    let rest = uri
        .strip_prefix("mxc://")
        .ok_or_else(|| "not an mxc:// URI".to_owned())?;
    let (server, id) = rest
        .split_once('/')
        .ok_or_else(|| "the mxc:// URI has no media id".to_owned())?;
    let server_ok = !server.is_empty()
        && server
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
    let id_ok = !id.is_empty()
        && id.len() <= 255
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !server_ok || !id_ok {
        return Err("the mxc:// URI has characters a server name or media id cannot have".into());
    }
    Ok((server, id))
}

/// Downloads media content.
pub trait Fetch {
    /// The bytes of `mxc://server/media_id`, as the server holds them (ciphertext for
    /// encrypted attachments).
    fn fetch(&self, server: &str, media_id: &str) -> crate::Result<Vec<u8>>;
}

/// Downloads through the homeserver's media repository.
#[derive(Debug)]
pub struct ClientFetch<'a> {
    /// The homeserver.
    pub client: &'a crate::client::Client,
    /// Largest download accepted.
    pub max_bytes: u64,
}

impl Fetch for ClientFetch<'_> {
    fn fetch(&self, server: &str, media_id: &str) -> crate::Result<Vec<u8>> {
        Ok(self
            .client
            .download_media(server, media_id, self.max_bytes)?)
    }
}

/// A file name for saved media: the media id, then the body's file name made safe.
fn file_name(media_id: &str, body: Option<&str>) -> String {
    let tail: String = body
        .unwrap_or("")
        .rsplit('/')
        .next()
        .unwrap_or("")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let tail = tail.trim_start_matches('.');
    if tail.is_empty() {
        media_id.to_owned()
    } else {
        format!("{media_id}-{tail}")
    }
}

/// Counts of media handled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaCounts {
    /// Saved.
    pub saved: u64,
    /// Not saved.
    pub failed: u64,
}

/// Fetch, check, decrypt and save every media item of `rooms` into `dir` (0700, files 0600),
/// noting the outcome on each event. `shown_as` turns a saved path into the path the output
/// file refers to. `warn` is told, in one line, about each failure.
pub fn save_all(
    rooms: &mut [Room],
    dir: &Path,
    shown_as: &dyn Fn(&Path) -> PathBuf,
    fetch: &dyn Fetch,
    progress: &dyn Progress,
    warn: &mut dyn FnMut(&str),
) -> crate::Result<MediaCounts> {
    create_private_dir(dir)
        .map_err(|e| crate::Error::io(format!("creating {}", dir.display()), e))?;
    let total: u64 = rooms
        .iter()
        .flat_map(|r| &r.events)
        .filter(|e| MediaRef::of(e.content()).is_some())
        .count() as u64;
    progress.phase("saving media", total, Unit::Events);
    let mut counts = MediaCounts::default();
    // Which media each file name holds: two media of one id on different servers, or one
    // ciphertext with another key (a hostile event reusing another's URI), never share a file.
    let mut names: HashMap<String, MediaRef> = HashMap::new();
    for room in rooms.iter_mut() {
        for e in room.events.iter_mut() {
            let Some(m) = MediaRef::of(e.content()) else {
                continue;
            };
            progress::check(progress)?;
            let body = e
                .content()
                .get("body")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let outcome = save_one(&m, body.as_deref(), dir, fetch, &mut names);
            progress.advance(1);
            let outcome = match outcome {
                Ok(p) => {
                    counts.saved += 1;
                    Ok(shown_as(&p))
                }
                Err(crate::Error::Interrupted) => return Err(crate::Error::Interrupted),
                Err(err) => {
                    counts.failed += 1;
                    let why = err.to_string();
                    warn(&format!(
                        "media of event {} ({}) not saved: {why}",
                        crate::session::sanitize(e.str("event_id").unwrap_or("without id")),
                        crate::session::sanitize(m.mxc().unwrap_or("no URI")),
                    ));
                    Err(why)
                }
            };
            e.media.push(MediaNote {
                mxc: m.mxc().map(str::to_owned),
                outcome,
            });
        }
    }
    Ok(counts)
}

fn save_one(
    m: &MediaRef,
    body: Option<&str>,
    dir: &Path,
    fetch: &dyn Fetch,
    names: &mut HashMap<String, MediaRef>,
) -> crate::Result<PathBuf> {
    let bad = |s: String| {
        crate::Error::Attachment(crate::room::attachment::AttachmentError::Malformed(s))
    };
    let mxc = match m {
        MediaRef::Bad(why) => return Err(bad(why.clone())),
        MediaRef::Encrypted(f) => &f.url,
        MediaRef::Plain(u) => u,
    };
    let (server, id) = parse_mxc(mxc).map_err(bad)?;
    let bytes = fetch.fetch(server, id)?;
    let mut name = file_name(id, body);
    let mut n = 1;
    while names.get(&name).is_some_and(|other| !other.same_as(m)) {
        n += 1;
        name = file_name(&format!("{id}-{n}"), body);
    }
    names.insert(name.clone(), m.clone());
    let path = dir.join(name);
    match m {
        MediaRef::Encrypted(f) => {
            // The hash is checked before anything is decrypted or written.
            let plain = f.decrypt(&bytes)?;
            atomic_write(&path, &plain, Overwrite::Replace)?;
        }
        _ => atomic_write(&path, &bytes, Overwrite::Replace)?,
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mxc_uris_and_file_names() {
        assert_eq!(
            parse_mxc("mxc://example.org/abc_D-1"),
            Ok(("example.org", "abc_D-1"))
        );
        assert!(parse_mxc("mxc://example.org/../../etc").is_err());
        assert!(parse_mxc("https://example.org/a").is_err());
        assert!(parse_mxc("mxc://example.org").is_err());
        assert!(parse_mxc("mxc://ex ample/a").is_err());
        assert_eq!(file_name("id", Some("../../cat pic.png")), "id-cat_pic.png");
        assert_eq!(file_name("id", Some("...")), "id");
        assert_eq!(file_name("id", None), "id");
    }

    struct Fixed(HashMap<String, Vec<u8>>);

    impl Fetch for Fixed {
        fn fetch(&self, server: &str, id: &str) -> crate::Result<Vec<u8>> {
            self.0
                .get(&format!("{server}/{id}"))
                .cloned()
                .ok_or_else(|| crate::Error::FileNotFound { path: id.into() })
        }
    }

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures/attachment")
                .join(name),
        )
        .unwrap_or_default()
    }

    #[test]
    fn saves_good_media_and_notes_bad_media() {
        use std::os::unix::fs::PermissionsExt;
        let file: Value =
            serde_json::from_slice(&fixture("pixel.png.file.json")).unwrap_or_default();
        let txt: Value =
            serde_json::from_slice(&fixture("hello.txt.file.json")).unwrap_or_default();
        // The pixel's ciphertext under another key: the hash holds, the plaintext is noise.
        let mut rekeyed = file.clone();
        rekeyed["key"]["k"] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into();
        let mut tampered = fixture("hello.txt.enc");
        tampered[0] ^= 1;
        let fetch = Fixed(HashMap::from([
            ("example.org/pixel_png".to_owned(), fixture("pixel.png.enc")),
            ("example.org/hello_txt".to_owned(), tampered),
            (
                "other.example/pixel_png".to_owned(),
                b"not the pixel".to_vec(),
            ),
        ]));
        let ev = |id: &str, content: Value| super::super::Event {
            seq: 0,
            event: json!({"type": "m.room.message", "event_id": id, "content": content})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            class: None,
            session_id: None,
            reason: None,
            media: Vec::new(),
        };
        let mut rooms = vec![Room {
            room_id: "!r".into(),
            events: vec![
                ev(
                    "$img",
                    json!({"msgtype": "m.image", "body": "pixel.png", "file": file}),
                ),
                ev(
                    "$txt",
                    json!({"msgtype": "m.file", "body": "hello.txt", "file": txt}),
                ),
                ev(
                    "$gone",
                    json!({"msgtype": "m.file", "body": "x", "url": "mxc://example.org/gone"}),
                ),
                ev("$text", json!({"msgtype": "m.text", "body": "no media"})),
                // The same media id on another server, and the same media again.
                ev(
                    "$twin",
                    json!({"msgtype": "m.file", "body": "pixel.png", "url": "mxc://other.example/pixel_png"}),
                ),
                ev(
                    "$again",
                    json!({"msgtype": "m.image", "body": "pixel.png", "file": file.clone()}),
                ),
                ev(
                    "$rekeyed",
                    json!({"msgtype": "m.image", "body": "pixel.png", "file": rekeyed}),
                ),
            ],
        }];
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dir = tmp.path().join("media");
        let mut warnings = Vec::new();
        let c = save_all(
            &mut rooms,
            &dir,
            &|p| p.to_path_buf(),
            &fetch,
            &crate::progress::NoProgress,
            &mut |w| warnings.push(w.to_owned()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c,
            MediaCounts {
                saved: 4,
                failed: 2
            }
        );
        assert_eq!(warnings.len(), 2);
        assert!(
            warnings[0].contains("$txt") && warnings[0].contains("SHA-256"),
            "{warnings:?}"
        );
        let saved = dir.join("pixel_png-pixel.png");
        assert_eq!(
            std::fs::read(&saved).unwrap_or_default(),
            fixture("pixel.png")
        );
        let mode = |p: &Path| {
            std::fs::metadata(p)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0)
        };
        assert_eq!(mode(&saved), 0o600);
        assert_eq!(mode(&dir), 0o700);
        // Nothing of the tampered file was written; the twin has a name of its own.
        assert_eq!(std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0), 3);
        let twin = dir.join("pixel_png-2-pixel.png");
        assert_eq!(std::fs::read(&twin).unwrap_or_default(), b"not the pixel");
        assert_eq!(
            std::fs::read(&saved).unwrap_or_default(),
            fixture("pixel.png")
        );
        let ev = &rooms[0].events;
        assert_eq!(ev[0].media[0].outcome, Ok(saved.clone()));
        assert!(ev[1].media[0].outcome.is_err());
        assert!(ev[3].media.is_empty());
        assert_eq!(ev[4].media[0].outcome, Ok(twin));
        assert_eq!(ev[5].media[0].outcome, ev[0].media[0].outcome);
        let noise = dir.join("pixel_png-3-pixel.png");
        assert_eq!(ev[6].media[0].outcome, Ok(noise.clone()));
        assert_ne!(
            std::fs::read(&noise).unwrap_or_default(),
            fixture("pixel.png")
        );
        assert_eq!(
            std::fs::read(&saved).unwrap_or_default(),
            fixture("pixel.png")
        );
    }
}
