//! Helpers shared by the fuzz targets in `fuzz_targets/`.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// JSON equality, except that two floats may differ by a few units in the last place.
///
/// serde_json is built without its `float_roundtrip` feature (by mxkeys too), so its float
/// parser may read back a float one ULP off what its writer wrote (for example
/// `330333…333` reads as 3.3033333333333333e44, which is written, then read as
/// 3.3033333333333337e44). Matrix JSON has no floats (canonical JSON forbids them), so this
/// only concerns unknown fields kept as they came; everything else must be exactly equal.
pub fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() && y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => {
                    x == y
                        || (x.is_sign_negative() == y.is_sign_negative()
                            && x.to_bits().abs_diff(y.to_bits()) <= 4)
                }
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// Serialise a value that serialises infallibly (maps, strings, numbers).
pub fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("serialising to a Value")
}

/// Parse `T` from `data`; when it parses, serialising it and parsing that again gives the
/// same value (compared as JSON, see [`same_json`]). Panics otherwise.
pub fn parse_round_trip<T: DeserializeOwned + Serialize>(data: &[u8]) -> Option<T> {
    let v: T = serde_json::from_slice(data).ok()?;
    let json = serde_json::to_vec(&v).expect("serialising");
    let again: T = serde_json::from_slice(&json).expect("re-serialised JSON does not parse");
    let (a, b) = (to_value(&v), to_value(&again));
    assert!(same_json(&a, &b), "JSON round trip: {a} became {b}");
    Some(v)
}

/// Whether a float appears anywhere in `v`.
pub fn has_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(a) => a.iter().any(has_float),
        Value::Object(m) => m.values().any(has_float),
        _ => false,
    }
}

/// A reader handing out the input a few bytes at a time (sizes cycling through 1..=7), as a
/// pipe or a slow disk might.
pub struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl<'a> Trickle<'a> {
    /// Read `data`; `step` picks the first read's size.
    pub fn new(data: &'a [u8], step: usize) -> Self {
        Trickle { data, step }
    }
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.step = self.step % 7 + 1;
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}
