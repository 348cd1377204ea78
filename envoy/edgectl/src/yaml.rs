//! A small YAML writer for JSON values: block style, strings always double-quoted (JSON string
//! syntax is valid YAML), so the output needs no YAML library to be exact.

use serde_json::Value;
use std::fmt::Write;

pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value, 0);
    out
}

fn is_plain_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
}

fn key(key: &str) -> String {
    if is_plain_key(key) {
        key.to_string()
    } else {
        Value::String(key.to_string()).to_string()
    }
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::Null => Some("null".into()),
        Value::Bool(_) | Value::Number(_) | Value::String(_) => Some(value.to_string()),
        Value::Array(items) if items.is_empty() => Some("[]".into()),
        Value::Object(map) if map.is_empty() => Some("{}".into()),
        _ => None,
    }
}

fn write_value(out: &mut String, value: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (name, inner) in map {
                match scalar(inner) {
                    Some(text) => {
                        let _ = writeln!(out, "{pad}{}: {text}", key(name));
                    }
                    None => {
                        let _ = writeln!(out, "{pad}{}:", key(name));
                        write_value(out, inner, indent + 2);
                    }
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                match scalar(item) {
                    Some(text) => {
                        let _ = writeln!(out, "{pad}- {text}");
                    }
                    None => {
                        // Render the item two deeper, then put its first line after "- ".
                        let mut nested = String::new();
                        write_value(&mut nested, item, indent + 2);
                        let _ = write!(out, "{pad}- {}", &nested[indent + 2..]);
                    }
                }
            }
        }
        other => {
            let _ = writeln!(out, "{pad}{}", scalar(other).unwrap_or_default());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn block_yaml() {
        let value = json!({
            "a": 1,
            "@type": "t",
            "list": [{"x": "1", "y": [true]}, "s", []],
            "empty": {}
        });
        assert_eq!(
            to_yaml(&value),
            "a: 1\n\"@type\": \"t\"\nlist:\n  - x: \"1\"\n    y:\n      - true\n  - \"s\"\n  - []\nempty: {}\n"
        );
    }
}
