//! One self-contained HTML page: the same reading as the text form, with every body escaped
//! and `formatted_body` (`org.matrix.custom.html`) sanitised by `ammonia` down to the tags and
//! attributes the client-server spec allows in `m.room.message`. Links keep only the `http`,
//! `https`, `ftp`, `mailto` and `magnet` schemes; `mxc://` images are shown only when the
//! media was saved (pointing at the saved file), otherwise removed. The page loads nothing
//! from anywhere: a Content-Security-Policy forbids scripts and remote content.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;

use serde_json::{Map, Value};

use super::txt::{Names, item_text};
use super::{Event, Item, Room, Timeline, strip_reply_fallback, utc};

/// Escape text for HTML content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// A saved file's path as a relative URL (each segment percent-encoded).
pub fn path_url(p: &Path) -> String {
    p.components()
        .map(|c| crate::client::encode(&c.as_os_str().to_string_lossy()))
        .collect::<Vec<_>>()
        .join("/")
}

/// The spec's allowed tags (client-server API, `m.room.message` `formatted_body`).
const TAGS: &[&str] = &[
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

/// The schemes a link may have.
const SCHEMES: &[&str] = &["http", "https", "ftp", "mailto", "magnet"];

/// Sanitise a `formatted_body`. `saved` maps `mxc://` URIs to the relative URL of the saved
/// media; images of other media are removed.
pub fn sanitize(html: &str, saved: &HashMap<String, String>) -> String {
    let tag_attributes: HashMap<&str, HashSet<&str>> = [
        ("font", &["data-mx-bg-color", "data-mx-color", "color"][..]),
        (
            "span",
            &[
                "data-mx-bg-color",
                "data-mx-color",
                "data-mx-spoiler",
                "data-mx-maths",
            ][..],
        ),
        ("a", &["name", "target", "href"][..]),
        ("img", &["width", "height", "alt", "title", "src"][..]),
        ("ol", &["start"][..]),
        ("div", &["data-mx-maths"][..]),
    ]
    .into_iter()
    .map(|(t, a)| (t, a.iter().copied().collect()))
    .collect();
    /// Relative URLs: only the saved files' (rewritten from `mxc://` by the filter).
    struct Local(HashSet<String>);
    impl<'a> ammonia::UrlRelativeEvaluate<'a> for Local {
        fn evaluate<'u>(&self, url: &'u str) -> Option<Cow<'u, str>> {
            self.0.contains(url).then_some(Cow::Borrowed(url))
        }
    }
    let local = Local(saved.values().cloned().collect());
    let saved = saved.clone();
    let mut b = ammonia::Builder::empty();
    b.add_tags(TAGS.iter().copied())
        .tag_attributes(tag_attributes)
        .url_schemes(SCHEMES.iter().chain(&["mxc"]).copied().collect())
        .link_rel(Some("noopener noreferrer nofollow"))
        // A reply's fallback quote repeats the message replied to: the export shows that itself.
        .clean_content_tags(["script", "style", "mx-reply"].into_iter().collect())
        .attribute_filter(move |element: &str, attribute: &str, value: &str| {
            let url = matches!(attribute, "src" | "href");
            if element == "img" && attribute == "src" {
                // Only mxc:// images, and only when saved: no remote image is ever loaded.
                return saved.get(value).map(|u| Cow::Owned(u.clone()));
            }
            // As a URL parser reads it: no spaces or controls around it, no tabs or newlines in it.
            let bare: String = value.chars().filter(|c| *c > ' ').take(4).collect();
            if url && bare.eq_ignore_ascii_case("mxc:") {
                // mxc:// is let through the scheme check for images only.
                return None;
            }
            Some(Cow::Borrowed(value))
        })
        // A relative URL is allowed only when it is a saved file's (rewritten above).
        .url_relative(ammonia::UrlRelative::Custom(Box::new(local)));
    b.clean(html).to_string()
}

const STYLE: &str = "body{font-family:sans-serif;max-width:60em;margin:1em auto;padding:0 1em}\
.ev{margin:.2em 0}.t{color:#666;font-size:.85em;margin-right:.5em}.who{font-weight:bold}\
.notice{color:#555;font-style:italic}.bad{color:#a00}.deleted{color:#777}\
.reply{border-left:3px solid #ccc;padding-left:.5em;color:#555;font-size:.9em}\
.edited{color:#777;font-size:.8em}img{max-width:100%;max-height:30em}";

fn media_html(e: &Event, content: &Map<String, Value>) -> String {
    let body = content
        .get("body")
        .and_then(Value::as_str)
        .unwrap_or("file");
    let is_image = matches!(
        content.get("msgtype").and_then(Value::as_str),
        Some("m.image")
    ) || e.ty() == "m.sticker";
    let mut out = String::new();
    for m in &e.media {
        match &m.outcome {
            Ok(path) => {
                // The event's own file (another event may reuse the URI with another key).
                let url = escape(&path_url(path));
                if is_image {
                    out.push_str(&format!(
                        "<div><a href=\"{url}\"><img src=\"{url}\" alt=\"{}\"></a></div>",
                        escape(body)
                    ));
                } else {
                    out.push_str(&format!(" <a href=\"{url}\">{}</a>", escape(body)));
                }
            }
            Err(why) => out.push_str(&format!(
                " <span class=\"bad\">(media not saved: {})</span>",
                escape(why)
            )),
        }
    }
    out
}

fn message_html(item: &Item<'_>, saved: &HashMap<String, String>) -> String {
    let Item::Message {
        event,
        who,
        content,
        edited,
        reply_to,
    } = item
    else {
        let class = match item {
            Item::Notice { .. } => "notice",
            Item::Undecryptable { .. } => "bad",
            Item::Redacted { .. } => "deleted",
            _ => "notice",
        };
        return format!(
            "<span class=\"{class}\">{}</span>",
            escape(&item_text(item))
        );
    };
    let mut out = String::new();
    if let Some((w, s)) = reply_to {
        out.push_str(&format!(
            "<div class=\"reply\">in reply to <b>{}</b>: {}</div>",
            escape(w),
            escape(s)
        ));
    }
    let msgtype = content.get("msgtype").and_then(Value::as_str);
    out.push_str(&format!("<span class=\"who\">{}</span> ", escape(who)));
    if msgtype == Some("m.emote") {
        out.insert_str(0, "* ");
    }
    let formatted = (content.get("format").and_then(Value::as_str)
        == Some("org.matrix.custom.html"))
    .then(|| content.get("formatted_body").and_then(Value::as_str))
    .flatten();
    let media = !event.media.is_empty()
        || matches!(msgtype, Some("m.image" | "m.file" | "m.video" | "m.audio"));
    match formatted {
        Some(f) if !media => out.push_str(&format!(
            "<span class=\"body\">{}</span>",
            sanitize(f, saved)
        )),
        _ => {
            let body = content.get("body").and_then(Value::as_str).unwrap_or("");
            let body = if reply_to.is_some() {
                strip_reply_fallback(body)
            } else {
                body
            };
            if media {
                out.push_str(&escape(&super::message_text(content)));
                if event.media.is_empty() {
                    out.push_str(" <span class=\"bad\">(media not saved)</span>");
                } else {
                    out.push_str(&media_html(event, content));
                }
            } else {
                out.push_str(&format!(
                    "<span class=\"body\">{}</span>",
                    escape(body).replace('\n', "<br>")
                ));
            }
        }
    }
    if *edited {
        out.push_str(" <span class=\"edited\">(edited)</span>");
    }
    out
}

/// Write `rooms` as one HTML page; returns the number of events shown.
pub fn write(out: &mut dyn Write, rooms: &[Room], names: &Names) -> std::io::Result<u64> {
    // For images inside formatted bodies: the first file saved of each URI.
    let mut saved: HashMap<String, String> = HashMap::new();
    for m in rooms.iter().flat_map(|r| &r.events).flat_map(|e| &e.media) {
        if let (Some(mxc), Ok(p)) = (&m.mxc, &m.outcome) {
            saved.entry(mxc.clone()).or_insert_with(|| path_url(p));
        }
    }
    let empty = (None, HashMap::new());
    let mut body = String::new();
    let mut n = 0;
    let mut titles = Vec::new();
    for room in rooms {
        let (name, members) = names.get(&room.room_id).unwrap_or(&empty);
        let t = Timeline::new(room, members, name.clone());
        let title = t.name.clone().unwrap_or_else(|| room.room_id.clone());
        titles.push(title.clone());
        body.push_str(&format!(
            "<section><h2>{}</h2><p class=\"t\">{}</p>\n",
            escape(&title),
            escape(&room.room_id)
        ));
        for item in &t.items {
            let e = super::txt::event(item);
            body.push_str(&format!(
                "<div class=\"ev\" id=\"{}\"><span class=\"t\">{}</span>{}</div>\n",
                escape(e.str("event_id").unwrap_or("")),
                utc(e.ts()),
                message_html(item, &saved)
            ));
            n += 1;
        }
        body.push_str("</section>\n");
    }
    write!(
        out,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src 'self' file:; media-src 'self' file:; style-src 'unsafe-inline'\">\
<meta name=\"referrer\" content=\"no-referrer\">\
<title>{}</title><style>{STYLE}</style></head><body>\n\
<p class=\"notice\">Decrypted Matrix history exported by mxkeys (times in UTC). This file is not encrypted.</p>\n{body}</body></html>\n",
        escape(&titles.join(", "))
    )?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_html_is_removed_and_allowed_tags_stay() {
        let saved = HashMap::from([("mxc://x/ok".to_owned(), "media/ok.png".to_owned())]);
        let dirty = r#"<b>bold</b><script>alert(1)</script><img src="mxc://x/ok" onerror="alert(2)"><img src="https://evil/track.png"><img src="mxc://x/unsaved"><a href="javascript:alert(3)">js</a><a href="https://matrix.org" style="color:red">ok</a><iframe src="https://evil"></iframe><font color="red" style="x">f</font><mx-reply><blockquote>quoted</blockquote></mx-reply><a href="relative/x">rel</a><a href="mxc://x/ok">mxclink</a><a href=" m&#9;xc://x/ok">mxc2</a><table><tr><td>c</td></tr></table><details><summary>s</summary>d</details>"#;
        let clean = sanitize(dirty, &saved);
        for gone in [
            "<script",
            "alert",
            "onerror",
            "javascript:",
            "<iframe",
            "style=",
            "evil",
            "unsaved",
            "quoted",
            "relative/x",
            "mxc:",
        ] {
            assert!(!clean.contains(gone), "{gone} survived: {clean}");
        }
        for kept in [
            "<b>bold</b>",
            "src=\"media/ok.png\"",
            "href=\"https://matrix.org\"",
            "<font color=\"red\">f</font>",
            "<td>c</td>",
            "<summary>s</summary>",
        ] {
            assert!(clean.contains(kept), "{kept} lost: {clean}");
        }
    }

    #[test]
    fn escaping() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(
            path_url(Path::new("media dir/a b.png")),
            "media%20dir/a%20b.png"
        );
    }
}
