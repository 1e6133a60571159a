//! Typed access to the fields of one JSON record, with messages that name the field, show the
//! value found and say what was expected (`field start: expected a number of seconds, found "1s"`).

use serde_json::{Map, Value};

/// The fields of one record (a JSON object).
pub(crate) struct Fields<'a>(&'a Map<String, Value>);

impl<'a> Fields<'a> {
    /// The record as an object, or why it is not one.
    pub fn of(v: &'a Value) -> Result<Fields<'a>, String> {
        match v {
            Value::Object(m) => Ok(Fields(m)),
            other => Err(format!("expected an object, found {}", show(other))),
        }
    }

    /// The value of a field; `null` counts as absent.
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    pub fn string(&self, name: &str) -> Result<String, String> {
        self.opt_string(name)?
            .ok_or_else(|| format!("field {name} is missing (expected a string)"))
    }

    pub fn opt_string(&self, name: &str) -> Result<Option<String>, String> {
        match self.0.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Null) => Ok(None),
            Some(other) => Err(format!(
                "field {name}: expected a string, found {}",
                show(other)
            )),
        }
    }

    /// A required list of strings.
    pub fn strings(&self, name: &str) -> Result<Vec<String>, String> {
        match self.0.get(name) {
            None => Err(format!(
                "field {name} is missing (expected a list of strings)"
            )),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(format!(
                        "field {name}: item {i}: expected a string, found {}",
                        show(other)
                    )),
                })
                .collect(),
            Some(other) => Err(format!(
                "field {name}: expected a list of strings, found {}",
                show(other)
            )),
        }
    }

    /// An optional time in seconds.
    pub fn opt_seconds(&self, name: &str) -> Result<Option<f64>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                format!(
                    "field {name}: expected a number of seconds, found {}",
                    show(v)
                )
            }),
        }
    }

    /// Fails on a field not in `known`.
    pub fn deny_unknown(&self, known: &[&str]) -> Result<(), String> {
        match self.0.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(format!(
                "unknown field {k:?}; expected one of {}",
                known.join(", ")
            )),
            None => Ok(()),
        }
    }
}

/// A value as it would appear in the file, cut short when long.
pub(crate) fn show(v: &Value) -> String {
    const MAX: usize = 60;
    let text = v.to_string();
    if text.chars().count() <= MAX {
        return text;
    }
    let cut: String = text.chars().take(MAX).collect();
    format!("{cut}…")
}

/// How a record's `answer` index range reads in messages: `0 to 2`, or `none` without options.
pub(crate) fn index_range(n: usize) -> String {
    match n {
        0 => "none".into(),
        n => format!("0 to {}", n - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_name_the_field_the_value_and_the_expectation() {
        let v = json!({"q": 3, "opts": ["a", 2], "start": "1s", "n": null, "list": "x"});
        let f = Fields::of(&v).unwrap();
        assert_eq!(
            f.string("q").unwrap_err(),
            "field q: expected a string, found 3"
        );
        assert_eq!(
            f.string("nope").unwrap_err(),
            "field nope is missing (expected a string)"
        );
        assert_eq!(f.opt_string("n").unwrap(), None);
        assert_eq!(
            f.strings("opts").unwrap_err(),
            "field opts: item 1: expected a string, found 2"
        );
        assert_eq!(
            f.strings("list").unwrap_err(),
            "field list: expected a list of strings, found \"x\""
        );
        assert_eq!(
            f.opt_seconds("start").unwrap_err(),
            "field start: expected a number of seconds, found \"1s\""
        );
        assert_eq!(f.opt_seconds("n").unwrap(), None);
        assert!(f
            .deny_unknown(&["q", "opts", "start", "n"])
            .unwrap_err()
            .starts_with("unknown field \"list\""));
        assert_eq!(
            Fields::of(&json!([1])).err().unwrap(),
            "expected an object, found [1]"
        );
        assert_eq!(show(&json!("x".repeat(100))).chars().count(), 61);
    }
}
