//! Strict reading of dataset JSON files: a repeated key in an object is found, not silently
//! resolved.
//!
//! Ordinary JSON parsers (serde_json, Python's `json`) keep the last of two values under one key,
//! so a file with `{"a": {...}, "a": {...}}` loses a record without a word. [`parse`] builds the
//! same [`serde_json::Value`] but lists every repeated key with where it was found, at any depth;
//! the value keeps the first occurrence. The loaders turn a repeated key inside a record into a
//! bad record, and a repeated top-level id (TOMATO) into a bad record for that id.
//!
//! A UTF-8 byte order mark at the start of the file (as some Windows editors write) is accepted and
//! ignored; UTF-16 files and text that is not UTF-8 are errors that say so.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io::Read;
use std::rc::Rc;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Which top-level element a repeated key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// The top-level object itself: one of its keys is repeated.
    Top,
    /// Somewhere inside the element at this index of the top-level list.
    Index(usize),
    /// Somewhere inside the value under this key of the top-level object.
    Key(String),
}

/// A key that appears twice (or more) in one JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKey {
    pub place: Place,
    pub key: String,
    /// 1-based line and column of the end of the repeated key.
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for DuplicateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "duplicate key {:?} in object at line {} column {}",
            self.key, self.line, self.column
        )
    }
}

/// A parsed file: the value (first occurrence of each repeated key) and the repeated keys.
#[derive(Debug)]
pub struct Parsed {
    pub value: Value,
    pub duplicates: Vec<DuplicateKey>,
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Parses one JSON document. The error text carries the line and column (serde_json's wording).
pub fn parse(bytes: &[u8]) -> Result<Parsed, String> {
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
        return Err("the file is UTF-16 text; save it as UTF-8".into());
    }
    if let Err(e) = std::str::from_utf8(bytes) {
        let at = e.valid_up_to();
        let (line, column) = line_column(bytes, at);
        return Err(format!(
            "not UTF-8 text: byte 0x{:02x} at line {line} column {} is not valid UTF-8",
            bytes[at],
            column + 1
        ));
    }
    let consumed = Rc::new(Cell::new(0usize));
    let ctx = Ctx {
        consumed: Rc::clone(&consumed),
        found: RefCell::new(Vec::new()),
    };
    let reader = Counting {
        rest: bytes,
        consumed,
    };
    let mut de = serde_json::Deserializer::from_reader(reader);
    let value = ValueSeed {
        ctx: &ctx,
        place: None,
    }
    .deserialize(&mut de)
    .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    let duplicates = ctx
        .found
        .into_inner()
        .into_iter()
        .map(|(place, key, at)| {
            let (line, column) = line_column(bytes, at);
            DuplicateKey {
                place,
                key,
                line,
                column,
            }
        })
        .collect();
    Ok(Parsed { value, duplicates })
}

/// 1-based line, and the column of the last byte before `offset` (0 at a line start).
fn line_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let column = match before.iter().rposition(|&b| b == b'\n') {
        Some(nl) => offset - nl - 1,
        None => offset,
    };
    (line, column)
}

/// Hands serde_json one byte per read, counting them, so a repeated key can be located.
struct Counting<'a> {
    rest: &'a [u8],
    consumed: Rc<Cell<usize>>,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match (self.rest.split_first(), buf.first_mut()) {
            (Some((&b, rest)), Some(slot)) => {
                *slot = b;
                self.rest = rest;
                self.consumed.set(self.consumed.get() + 1);
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

struct Ctx {
    consumed: Rc<Cell<usize>>,
    /// (place, key, byte offset just after the repeated key)
    found: RefCell<Vec<(Place, String, usize)>>,
}

/// Builds a [`Value`]; `place` is `None` at the top level, else the top-level element we are in.
#[derive(Clone, Copy)]
struct ValueSeed<'a> {
    ctx: &'a Ctx,
    place: Option<&'a Place>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        loop {
            let item_place;
            let place = match self.place {
                Some(p) => p,
                None => {
                    item_place = Place::Index(out.len());
                    &item_place
                }
            };
            let seed = ValueSeed {
                ctx: self.ctx,
                place: Some(place),
            };
            match seq.next_element_seed(seed)? {
                Some(v) => out.push(v),
                None => break,
            }
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let at = self.ctx.consumed.get();
            let value_place;
            let place = match self.place {
                Some(p) => p,
                None => {
                    value_place = Place::Key(key.clone());
                    &value_place
                }
            };
            let value = map.next_value_seed(ValueSeed {
                ctx: self.ctx,
                place: Some(place),
            })?;
            if out.contains_key(&key) {
                let here = self.place.cloned().unwrap_or(Place::Top);
                self.ctx.found.borrow_mut().push((here, key, at));
            } else {
                out.insert(key, value);
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn repeated_keys_are_listed_with_their_place_and_line() {
        let text = "{\n  \"a\": {\"x\": 1, \"x\": 2},\n  \"b\": [1, {\"y\": 0}],\n  \"a\": 3\n}\n";
        let p = parse(text.as_bytes()).unwrap();
        assert_eq!(p.value, json!({"a": {"x": 1}, "b": [1, {"y": 0}]}));
        let msgs: Vec<(Place, String)> = p
            .duplicates
            .iter()
            .map(|d| (d.place.clone(), d.to_string()))
            .collect();
        assert_eq!(
            msgs,
            [
                (
                    Place::Key("a".into()),
                    "duplicate key \"x\" in object at line 2 column 19".to_string()
                ),
                (
                    Place::Top,
                    "duplicate key \"a\" in object at line 4 column 5".to_string()
                ),
            ]
        );
    }

    #[test]
    fn duplicates_inside_list_items_name_the_item() {
        let p = parse(br#"[{"k": 1}, {"k": 1, "j": [{"z": 1, "z": 1}]}]"#).unwrap();
        assert_eq!(p.duplicates.len(), 1);
        assert_eq!(p.duplicates[0].place, Place::Index(1));
        assert_eq!(p.duplicates[0].key, "z");
    }

    #[test]
    fn a_utf8_bom_is_accepted_and_other_encodings_are_named() {
        let p = parse(b"\xEF\xBB\xBF[1, 2.5, \"x\", null, true]").unwrap();
        assert_eq!(p.value, json!([1, 2.5, "x", null, true]));
        assert!(p.duplicates.is_empty());
        let e = parse(b"\xFF\xFE[\x00]\x00").unwrap_err();
        assert!(e.contains("UTF-16"), "{e}");
        let e = parse(b"\x00\x05\x16\x07\xff junk").unwrap_err();
        assert!(e.contains("not UTF-8"), "{e}");
    }

    #[test]
    fn syntax_errors_and_trailing_text_carry_the_position() {
        let e = parse(b"[1,\n 2,]").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        let e = parse(b"[1] x").unwrap_err();
        assert!(e.contains("trailing characters at line 1"), "{e}");
        let e = parse(b"").unwrap_err();
        assert!(e.contains("EOF"), "{e}");
    }
}
