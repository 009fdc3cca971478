//! The armor of a key-export file: header, base64 body, footer.
//!
//! Any bytes: `ArmorDecoder` never panics, gives the same result however the input is split
//! into reads, and whatever it accepts re-encodes (`ArmorEncoder`) to text that decodes to the
//! very same bytes.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use mxkeys::export::armor::{ArmorDecoder, ArmorEncoder, ArmorInfo};
use mxkeys_fuzz::Trickle;

/// Decode the whole body (with the layout seen), or the decoder's error message.
fn decode(input: impl Read) -> Result<(Vec<u8>, ArmorInfo), String> {
    let mut dec = ArmorDecoder::new(input);
    let mut out = Vec::new();
    loop {
        match dec.next_chunk() {
            Ok(Some(chunk)) => {
                assert!(!chunk.is_empty(), "next_chunk returned an empty chunk");
                out.extend_from_slice(chunk);
            }
            Ok(None) => break,
            Err(e) => return Err(e.to_string()),
        }
    }
    assert_eq!(dec.info().decoded_len, out.len() as u64, "decoded_len");
    // Describing the layout must not panic either.
    let _ = dec.info().describe();
    Ok((out, dec.info().clone()))
}

fuzz_target!(|data: &[u8]| {
    let whole = decode(data);
    let trickled = decode(Trickle::new(data, data.len() % 7));
    // The same bytes and layout, or an error either way (messages may name other lines).
    assert!(
        whole.as_ref().ok() == trickled.as_ref().ok(),
        "the result depends on how the input is split into reads: {:?} vs {:?}",
        whole.as_ref().map(|(b, i)| (b.len(), i)),
        trickled.as_ref().map(|(b, i)| (b.len(), i)),
    );
    let Ok((decoded, _)) = whole else { return };

    // Accepted: the canonical armor of the same bytes decodes back to them.
    let mut enc = ArmorEncoder::new(Vec::new()).expect("writing to a Vec");
    enc.write(&decoded).expect("writing to a Vec");
    let text = enc.finish().expect("writing to a Vec");
    let (again, info) = decode(&text[..]).expect("the encoder's armor does not decode");
    assert_eq!(again, decoded, "armor round trip changed the bytes");
    assert!(!info.text_after_footer && !info.text_before_header && info.final_newline);
});
