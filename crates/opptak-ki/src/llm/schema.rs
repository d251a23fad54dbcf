//! The draft schema a model is held to, and the checks its answer must pass
//! before it becomes a [`Draft`](opptak_domain::summary::Draft): JSON (a
//! Markdown fence and raw newlines in strings tolerated), valid against the
//! schema, topics from the taxonomy. Errors name the place, never the text.

use super::{truncate, LlmError};
use opptak_domain::summary::Taxonomy;
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;

/// The four fields a model answers with (the rest of a [`Draft`](opptak_domain::summary::Draft) is ours).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Answer {
    pub(super) summary: String,
    pub(super) topics: Vec<String>,
    pub(super) customer_requests: Vec<String>,
    pub(super) follow_ups: Vec<String>,
}

/// The draft schema of `taxonomy` as JSON ([`Taxonomy::draft_schema`]).
pub fn draft_schema(taxonomy: &Taxonomy) -> Result<Value, LlmError> {
    serde_json::from_str(&taxonomy.draft_schema())
        .map_err(|e| LlmError::Rejected(format!("the draft schema is not JSON ({})", json_error(&e))))
}

/// Parses and checks a model's answer: JSON (a Markdown code fence around it
/// is tolerated), valid against `schema`, topics from `taxonomy` (duplicates
/// dropped). The reason names the place, never the offending text.
pub(super) fn check_answer(taxonomy: &Taxonomy, schema: &Value, content: &str) -> Result<Answer, String> {
    let text = escape_raw_controls(strip_fence(content));
    let value: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON ({})", json_error(&e)))?;
    validate_json(schema, &value)?;
    let mut answer: Answer = serde_json::from_value(value).map_err(|e| format!("not a draft ({})", json_error(&e)))?;
    let mut seen = std::collections::HashSet::new();
    answer.topics.retain(|t| seen.insert(t.clone()));
    taxonomy.check_topics(&answer.topics).map_err(|e| e.to_string())?;
    answer.summary = answer.summary.trim().to_string();
    if answer.summary.is_empty() {
        return Err("summary is empty".into());
    }
    for list in [&mut answer.customer_requests, &mut answer.follow_ups] {
        list.iter_mut().for_each(|s| *s = s.trim().to_string());
        list.retain(|s| !s.is_empty());
    }
    Ok(answer)
}

/// Escapes raw control characters inside JSON strings. llama.cpp's JSON
/// grammars let a model put a bare newline in a string, which JSON forbids;
/// the text is fine, so it is repaired rather than refused. Valid JSON comes
/// out unchanged.
fn escape_raw_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c < ' ') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string && !escaped && c < ' ' {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c => out.push_str(&format!("\\u{:04x}", c as u32)),
            }
            continue;
        }
        if in_string && !escaped && c == '\\' {
            escaped = true;
        } else {
            if !escaped && c == '"' {
                in_string = !in_string;
            }
            escaped = false;
        }
        out.push(c);
    }
    Cow::Owned(out)
}

fn strip_fence(content: &str) -> &str {
    let t = content.trim();
    let Some(rest) = t.strip_prefix("```") else {
        return t;
    };
    let rest = rest.strip_prefix("json").unwrap_or(rest);
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

/// Checks `value` against the subset of JSON Schema the draft schema uses:
/// `type`, `properties`, `required`, `additionalProperties: false`, `items`,
/// `enum`, `minItems`, `maxItems`, `minLength`, `maxLength`. The error names
/// the JSON pointer and the rule, not the value (model text may quote the
/// transcript).
pub fn validate_json(schema: &Value, value: &Value) -> Result<(), String> {
    validate_at(schema, value, "")
}

fn validate_at(schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let here = if at.is_empty() { "/" } else { at };
    if let Some(ty) = schema["type"].as_str() {
        let ok = match ty {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            _ => return Err(format!("schema at {here}: unsupported type {ty:?}")),
        };
        if !ok {
            return Err(format!("at {here}: expected {ty}"));
        }
    }
    if let Some(options) = schema["enum"].as_array() {
        if !options.contains(value) {
            return Err(format!("at {here}: not one of the allowed values"));
        }
    }
    if let Some(s) = value.as_str() {
        let n = s.chars().count() as u64;
        if schema["minLength"].as_u64().is_some_and(|min| n < min) {
            return Err(format!("at {here}: shorter than minLength {}", schema["minLength"]));
        }
        if schema["maxLength"].as_u64().is_some_and(|max| n > max) {
            return Err(format!("at {here}: longer than maxLength {}", schema["maxLength"]));
        }
    }
    if let Some(items) = value.as_array() {
        let n = items.len() as u64;
        if schema["minItems"].as_u64().is_some_and(|min| n < min) {
            return Err(format!("at {here}: fewer than minItems {}", schema["minItems"]));
        }
        if schema["maxItems"].as_u64().is_some_and(|max| n > max) {
            return Err(format!("at {here}: more than maxItems {}", schema["maxItems"]));
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                validate_at(item_schema, item, &format!("{at}/{i}"))?;
            }
        }
    }
    if let Some(obj) = value.as_object() {
        if let Some(required) = schema["required"].as_array() {
            for name in required.iter().filter_map(Value::as_str) {
                if !obj.contains_key(name) {
                    return Err(format!("at {here}: missing required field {name:?}"));
                }
            }
        }
        let props = schema["properties"].as_object();
        for (name, v) in obj {
            match props.and_then(|p| p.get(name)) {
                Some(s) => validate_at(s, v, &format!("{at}/{name}"))?,
                None if schema["additionalProperties"] == Value::Bool(false) => {
                    return Err(format!("at {here}: unexpected field {:?}", truncate(name, 40)));
                }
                None => {}
            }
        }
    }
    Ok(())
}

pub(super) fn json_error(e: &serde_json::Error) -> String {
    // serde_json's own messages may quote the offending value; position only.
    let what = match e.classify() {
        serde_json::error::Category::Io => "io error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Eof => "ends early",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_schema_validator_names_the_place_not_the_value() {
        let t = Taxonomy::default_taxonomy();
        let schema = draft_schema(&t).unwrap_or_else(|e| panic!("{e}"));
        let ok = json!({"summary": "s", "topics": ["cards"], "customer_requests": [], "follow_ups": ["x"]});
        assert_eq!(validate_json(&schema, &ok), Ok(()));
        let cases = [
            (
                json!({"summary": "s", "topics": ["secret-ish"], "customer_requests": [], "follow_ups": []}),
                "at /topics/0: not one of the allowed values",
            ),
            (
                json!({"summary": "s", "topics": [], "customer_requests": [], "follow_ups": []}),
                "at /topics: fewer than minItems 1",
            ),
            (
                json!({"summary": "s", "topics": ["cards"], "customer_requests": []}),
                "at /: missing required field \"follow_ups\"",
            ),
            (
                json!({"summary": 1, "topics": ["cards"], "customer_requests": [], "follow_ups": []}),
                "at /summary: expected string",
            ),
            (
                json!({"summary": "s", "topics": ["cards"], "customer_requests": [], "follow_ups": [], "x": 1}),
                "at /: unexpected field \"x\"",
            ),
            (
                json!({"summary": "s", "topics": ["cards", "pension", "insurance", "other"], "customer_requests": [], "follow_ups": []}),
                "at /topics: more than maxItems 3",
            ),
            (json!([]), "at /: expected object"),
        ];
        for (value, want) in cases {
            assert_eq!(validate_json(&schema, &value), Err(want.to_string()));
        }
    }

    #[test]
    fn answers_are_checked_and_tidied() {
        let t = Taxonomy::default_taxonomy();
        let schema = draft_schema(&t).unwrap_or_else(|e| panic!("{e}"));
        let fenced = "```json\n{\"summary\": \" S. \", \"topics\": [\"cards\", \"cards\"], \"customer_requests\": [\"\", \"a\"], \"follow_ups\": []}\n```";
        let a = check_answer(&t, &schema, fenced).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (a.summary.as_str(), a.topics, a.customer_requests),
            ("S.", vec!["cards".to_string()], vec!["a".to_string()])
        );
        let bad = check_answer(&t, &schema, "{\"summary\": \"my fnr is 123\"").unwrap_err();
        assert!(bad.starts_with("not JSON (ends early at line 1"), "{bad}");
        assert!(!bad.contains("123"));
        let blank = check_answer(
            &t,
            &schema,
            r#"{"summary": " ", "topics": ["other"], "customer_requests": [], "follow_ups": []}"#,
        );
        assert_eq!(blank.unwrap_err(), "summary is empty");
    }

    #[test]
    fn raw_newlines_inside_strings_are_repaired() {
        let raw = "{\"summary\": \"line one\nline\ttwo \\\"q\\\"\",\n \"x\": 1}";
        let fixed = escape_raw_controls(raw);
        let v: Value = serde_json::from_str(&fixed).unwrap_or_else(|e| panic!("{e}: {fixed}"));
        assert_eq!(v["summary"], "line one\nline\ttwo \"q\"");
        let valid = r#"{"a": "b\nc"}"#;
        assert!(matches!(escape_raw_controls(valid), Cow::Borrowed(_)));
    }
}
