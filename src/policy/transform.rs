//! policy::transform: the schema transforms the `Raw*` policy types name in their `#[schemars(transform = …)]` attributes.
//!
//! Beside those types and below [`super::schema`], which derives the schemas from them: the
//! types need the transforms, and the schema generator needs the types, so the transforms cannot
//! live in `schema` without `mirror` and `schema` importing each other.

/// `targets` is required though it parses with a default (so that its absence gets the loader's
/// own message, "missing: at least one target", rather than serde's).
pub(crate) fn require_targets(schema: &mut schemars::Schema) {
    let required = schema
        .ensure_object()
        .entry("required")
        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    if let Some(list) = required.as_array_mut() {
        if !list.iter().any(|k| k == "targets") {
            list.push("targets".into());
        }
    }
}

/// For keys whose default is not a constant (it depends on the file): the description says it.
pub(crate) fn no_default(schema: &mut schemars::Schema) {
    schema.remove("default");
}

/// An environment names `source` (one image) or `images` (a release), exactly one of them.
pub(crate) fn source_or_images(schema: &mut schemars::Schema) {
    schema.ensure_object().insert(
        "oneOf".into(),
        serde_json::json!([{ "required": ["source"] }, { "required": ["images"] }]),
    );
}
