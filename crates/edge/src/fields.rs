//! Sparse fieldsets (`?fields=id,name,featured.price`): a client asks for only the fields it
//! renders, and the gateway trims the serialised response to them. Arrays are transparent, so
//! `featured.name` keeps `name` in every element of `featured`.
//!
//! Requested fields are checked against the endpoint's documented list, so a typo is a 400 that
//! names it, not a silently empty object.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::EdgeError;

/// The root field that is never trimmed: a client must always learn that parts are missing.
const ALWAYS_KEPT: &str = "degraded";

/// A parsed, validated `fields` parameter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    root: Node,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Node {
    /// Empty means "keep the whole value".
    children: BTreeMap<String, Node>,
}

// === impl FieldSet ===

impl FieldSet {
    /// Parses a comma-separated list of dotted paths, each of which must be in `allowed`.
    pub fn parse(raw: &str, allowed: &[&str]) -> Result<Self, EdgeError> {
        let mut root = Node::default();
        for field in raw.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            if !allowed.contains(&field) {
                return Err(EdgeError::invalid(
                    "invalid_fields",
                    format!("unknown field `{field}`; this endpoint has: {}", allowed.join(", ")),
                ));
            }
            let mut node = &mut root;
            for segment in field.split('.') {
                node = node.children.entry(segment.to_owned()).or_default();
            }
            // Asking for `a` after `a.b` (or before) means all of `a`.
            if field.split('.').count() == 1 {
                node.children.clear();
            }
        }
        if root.children.is_empty() {
            return Err(EdgeError::invalid("invalid_fields", "`fields` names no field"));
        }
        Ok(Self { root })
    }

    /// Serialises `body` and trims it to the fields requested, if any.
    pub fn project<T: serde::Serialize>(
        fields: Option<&Self>,
        body: &T,
    ) -> Result<Value, EdgeError> {
        let mut value = serde_json::to_value(body).map_err(EdgeError::internal)?;
        if let Some(fields) = fields {
            fields.apply(&mut value);
        }
        Ok(value)
    }

    /// Trims `value` to the requested fields (and `degraded`).
    pub fn apply(&self, value: &mut Value) {
        if let Value::Object(map) = value {
            map.retain(|k, _| k == ALWAYS_KEPT || self.root.children.contains_key(k));
        }
        trim(value, &self.root);
    }
}

fn trim(value: &mut Value, node: &Node) {
    if node.children.is_empty() {
        return;
    }
    match value {
        Value::Object(map) => {
            map.retain(|k, _| k == ALWAYS_KEPT || node.children.contains_key(k));
            for (key, child) in &node.children {
                if let Some(v) = map.get_mut(key) {
                    trim(v, child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| trim(item, node)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ALLOWED: &[&str] = &["id", "name", "price", "featured", "featured.id", "featured.name"];

    #[test]
    fn keeps_only_requested_top_level_fields_and_degraded() {
        let mut v = json!({"id": 1, "name": "x", "price": "€1", "degraded": ["reviews"]});
        FieldSet::parse("id,price", ALLOWED).unwrap().apply(&mut v);
        assert_eq!(v, json!({"id": 1, "price": "€1", "degraded": ["reviews"]}));
    }

    #[test]
    fn dotted_paths_reach_into_arrays() {
        let mut v = json!({"featured": [{"id": 1, "name": "a", "image": "i"}, {"id": 2, "name": "b"}], "id": 9});
        FieldSet::parse("featured.name", ALLOWED).unwrap().apply(&mut v);
        assert_eq!(v, json!({"featured": [{"name": "a"}, {"name": "b"}]}));
    }

    #[test]
    fn a_whole_field_wins_over_its_subfields() {
        let mut v = json!({"featured": [{"id": 1, "name": "a"}]});
        FieldSet::parse("featured.id,featured", ALLOWED).unwrap().apply(&mut v);
        assert_eq!(v, json!({"featured": [{"id": 1, "name": "a"}]}));
    }

    #[test]
    fn unknown_and_empty_fields_are_400() {
        let err = FieldSet::parse("id,pricee", ALLOWED).unwrap_err();
        assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
        assert_eq!(err.code(), "invalid_fields");
        assert!(FieldSet::parse(" , ", ALLOWED).is_err());
    }
}
