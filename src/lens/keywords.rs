//! Keyword lists for logit-lens concept counts (`configs/keywords/*.yaml`):
//!
//! ```yaml
//! name: action_sequence          # optional (default: the file name)
//! categories:
//!   spatial: [bag, bed, book]
//!   temporal: [eat, close, open]
//! ```
//!
//! A decoded token matches a keyword when, trimmed of spaces and lower-cased, it equals it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct KeywordSet {
    pub name: String,
    /// `(category, keywords)` in file order, keywords lower-cased.
    pub categories: Vec<(String, Vec<String>)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeywordsYaml {
    name: Option<String>,
    categories: serde_yaml::Mapping,
}

/// The form a token is compared in.
pub fn normalise_token(text: &str) -> String {
    text.trim().to_lowercase()
}

impl KeywordSet {
    /// Indices of the categories `token_text` belongs to.
    pub fn categories_of(&self, token_text: &str) -> Vec<usize> {
        let t = normalise_token(token_text);
        if t.is_empty() {
            return Vec::new();
        }
        self.categories
            .iter()
            .enumerate()
            .filter(|(_, (_, words))| words.contains(&t))
            .map(|(i, _)| i)
            .collect()
    }

    pub fn category_names(&self) -> Vec<String> {
        self.categories.iter().map(|(n, _)| n.clone()).collect()
    }
}

/// Parses a keywords file's text; `default_name` names it when the file does not.
pub fn parse_keywords(text: &str, default_name: &str) -> std::result::Result<KeywordSet, String> {
    let y: KeywordsYaml = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    let mut categories = Vec::new();
    let mut seen = BTreeMap::new();
    for (k, v) in y.categories {
        let name = k
            .as_str()
            .ok_or_else(|| format!("categories: key {k:?} is not a string"))?
            .to_string();
        let words: Vec<String> = serde_yaml::from_value::<Vec<String>>(v)
            .map_err(|e| format!("categories.{name}: expected a list of words: {e}"))?
            .iter()
            .map(|w| normalise_token(w))
            .collect();
        if words.is_empty() || words.iter().any(String::is_empty) {
            return Err(format!("categories.{name}: needs non-empty words"));
        }
        if seen.insert(name.clone(), ()).is_some() {
            return Err(format!("categories: {name} appears twice"));
        }
        categories.push((name, words));
    }
    if categories.is_empty() {
        return Err("categories: none given".into());
    }
    Ok(KeywordSet {
        name: y.name.unwrap_or_else(|| default_name.to_string()),
        categories,
    })
}

/// Reads a keywords file; errors name the file and the field.
pub fn load_keywords(path: &Path) -> Result<KeywordSet> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("keywords");
    parse_keywords(&text, stem).map_err(|msg| Error::Data {
        path: path.to_path_buf(),
        msg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches_tokens() {
        let k = parse_keywords(
            "categories:\n  spatial: [Bag, cup]\n  temporal: [open, put, cup]\n",
            "x",
        )
        .unwrap();
        assert_eq!(k.name, "x");
        assert_eq!(k.category_names(), ["spatial", "temporal"]);
        assert_eq!(k.categories_of(" bag"), vec![0]);
        assert_eq!(k.categories_of("Cup "), vec![0, 1]);
        assert!(k.categories_of("table").is_empty());
        assert!(k.categories_of(" ").is_empty());
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse_keywords("categories:\n  spatial: bag\n", "x").unwrap_err();
        assert!(e.contains("categories.spatial"), "{e}");
        assert!(parse_keywords("categories: {}\n", "x").is_err());
        assert!(parse_keywords("name: a\n", "x").is_err());
    }
}
