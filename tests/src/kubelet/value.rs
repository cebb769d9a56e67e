//! Reading the manifest's JSON: strings and lists of strings, or a panic naming the field.

use serde_json::Value;

/// `v` as a string; panics naming `what` otherwise.
pub fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {v}"))
}

/// `v` as a list of strings (absent: empty).
pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| str_of(s, "list item").to_owned())
                .collect()
        })
        .unwrap_or_default()
}
