//! The session JSON model: `ExportedSession::from_json` on one element, and the streaming
//! array parsers (`ArraySplitter`, `SessionStream`) on a whole plaintext.
//!
//! Any bytes: nothing panics; an accepted session serialises (`to_json`) to JSON that parses
//! back to an equal session (and to the same JSON); the stored-session parser accepts what
//! the full parser accepts; the streaming parsers give the same answer whatever the chunk
//! size, and the same as the in-memory `parse_array`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxkeys::export::{ArraySplitter, Element, FeedError};
use mxkeys::session::{self, EntryError, ExportedSession, Ordering, ParsedEntry, SessionStream};
use mxkeys_fuzz::{has_float, same_json, to_value};

fn check_session(data: &[u8]) {
    let parsed = ExportedSession::from_json(data);
    if let Ok(s) = &parsed {
        let json = s.to_json();
        let again = ExportedSession::from_json(&json).expect("to_json output does not parse");
        let (a, b) = (to_value(s), to_value(&again));
        assert!(same_json(&a, &b), "JSON round trip changed the session");
        if !has_float(&a) {
            assert!(again == *s, "JSON round trip changed the session");
            assert_eq!(*again.to_json(), *json, "to_json is not stable");
        }
        assert_eq!(again.first_known_index(), s.first_known_index());
        assert_eq!(s.compare_to(&again), Ordering::Equal, "a session vs itself");
        let stored =
            ExportedSession::from_stored_json(data).expect("from_json accepts, stored does not");
        assert!(stored == *s, "stored parser disagrees");
    } else if let Err(EntryError::Syntax(_)) = &parsed {
        assert!(
            ExportedSession::from_stored_json(data).is_err(),
            "stored parser accepts invalid JSON"
        );
    }
}

/// The splitter's elements, fed in chunks of `chunk` bytes.
fn split(data: &[u8], chunk: usize) -> Result<Vec<Vec<u8>>, ()> {
    let mut sp = ArraySplitter::new();
    let mut out = Vec::new();
    for c in data.chunks(chunk) {
        sp.feed::<()>(c, &mut |e| {
            match e {
                Element::Value { index, bytes } => {
                    assert_eq!(index, out.len(), "element index");
                    out.push(bytes.to_vec());
                }
                Element::Oversized { .. } => panic!("oversized element in a small input"),
            }
            Ok(())
        })
        .map_err(|e| match e {
            FeedError::Split(_) => (),
            FeedError::Sink(()) => unreachable!(),
        })?;
    }
    let n = sp.finish().map_err(|_| ())?;
    assert_eq!(n, out.len(), "finish count");
    Ok(out)
}

/// SessionStream's entries, fed in chunks of `chunk` bytes.
fn stream(data: &[u8], chunk: usize) -> Option<Vec<ParsedEntry>> {
    let mut all: Vec<ParsedEntry> = Vec::new();
    let mut sink = |batch: Vec<ParsedEntry>| {
        all.extend(batch);
        Ok(())
    };
    let mut st = SessionStream::new(mxkeys::Error::NotAKeyExport, &mut sink);
    for c in data.chunks(chunk) {
        st.feed(c).ok()?;
    }
    let n = st.finish().ok()?;
    assert_eq!(n, all.len(), "SessionStream count");
    Some(all)
}

fuzz_target!(|data: &[u8]| {
    check_session(data);

    // A chunk size that depends on the input, so both small and whole feeds get exercised.
    let chunk = 1 + data.len() % 7;
    let whole = split(data, data.len().max(1));
    let pieces = split(data, chunk);
    assert_eq!(whole, pieces, "ArraySplitter depends on chunking");
    if let Ok(elements) = &whole {
        // Every element the splitter hands over is itself well-formed enough to try.
        for e in elements {
            check_session(e);
        }
    }

    let in_memory = session::parse_array(data);
    let streamed = stream(data, chunk);
    match (&in_memory, &streamed) {
        (Ok(a), Some(b)) => {
            assert_eq!(a.len(), b.len());
            for (i, (want, (index, got))) in a.iter().zip(b).enumerate() {
                assert_eq!(*index, i);
                assert_eq!(got, want, "entry {i}");
            }
        }
        (Err(_), None) => {}
        _ => panic!(
            "parse_array and SessionStream disagree: {:?} / {}",
            in_memory.as_ref().err(),
            streamed.is_some()
        ),
    }
    if whole.is_err() {
        assert!(
            in_memory.is_err(),
            "parse_array accepts what the splitter refuses"
        );
    }
});
