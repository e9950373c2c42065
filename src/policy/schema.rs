//! policy::schema: JSON Schemas of the policy files, derived from the very types that parse them, for editors and CI.
//!
//! The schemas describe the files as written (the `Raw*` types), so a key the loader rejects as
//! unknown is one the schema rejects too. Semantic checks that need more than one field (the
//! `tags` list must name the environment, a target is a registry + repository *or* a layout) stay
//! the loader's; the schema catches typos and wrong types while the file is being written.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;

use super::mirror::RawMirror;
use super::retention::RawRetention;
use super::{RawEnv, RawRegistries};

/// The kinds of policy file, one schema each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaKind {
    /// `policies/<environment>.yaml`: an environment's promotion policy.
    Environment,
    /// A `kind: mirror` policy.
    Mirror,
    /// `policies/registries.yaml`.
    Registries,
    /// A `kind: retention` policy.
    Retention,
}

impl SchemaKind {
    /// Every kind, in the order their files are written.
    pub const ALL: [SchemaKind; 4] = [
        SchemaKind::Environment,
        SchemaKind::Mirror,
        SchemaKind::Registries,
        SchemaKind::Retention,
    ];

    /// The kind's name, also its schema's file stem (`environment.json`).
    pub fn name(self) -> &'static str {
        match self {
            SchemaKind::Environment => "environment",
            SchemaKind::Mirror => "mirror",
            SchemaKind::Registries => "registries",
            SchemaKind::Retention => "retention",
        }
    }

    /// The schema's file name.
    pub fn file_name(self) -> String {
        format!("{}.json", self.name())
    }

    /// The kind of the policy file at `path` with this text, decided as the loader decides it
    /// (`registries.yaml` by name, a mirror by `kind: mirror`, anything else an environment).
    pub fn of_file(path: &Path, text: &str) -> SchemaKind {
        match super::kind_of_text(path, text).as_deref() {
            Some("registries") => SchemaKind::Registries,
            Some("mirror") => SchemaKind::Mirror,
            Some("retention") => SchemaKind::Retention,
            _ => SchemaKind::Environment,
        }
    }
}

impl fmt::Display for SchemaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SchemaKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        SchemaKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("{s:?}: expected environment, mirror, registries or retention"))
    }
}

/// The JSON Schema (draft 2020-12) of one kind of policy file.
pub fn schema(kind: SchemaKind) -> serde_json::Value {
    match kind {
        SchemaKind::Environment => generate::<RawEnv>(kind),
        SchemaKind::Mirror => generate::<RawMirror>(kind),
        SchemaKind::Registries => generate::<RawRegistries>(kind),
        SchemaKind::Retention => generate::<RawRetention>(kind),
    }
}

/// The schema as committed under `policies/schema/`: pretty JSON with a final newline.
pub fn schema_text(kind: SchemaKind) -> String {
    let mut text =
        serde_json::to_string_pretty(&schema(kind)).expect("a schema serialises to JSON");
    text.push('\n');
    text
}

fn generate<T: JsonSchema>(kind: SchemaKind) -> serde_json::Value {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let mut value = generator.into_root_schema_for::<T>().to_value();
    no_null(&mut value);
    if let Some(obj) = value.as_object_mut() {
        // A stable title naming the file kind, rather than the Rust type's name.
        obj.insert(
            "title".into(),
            format!("ferry {} policy", kind.name()).into(),
        );
    }
    value
}

/// Drops `null` from every schema: YAML leaves a key out by omitting it, and no policy key takes
/// `null` as a value, so an editor should flag `key:` with nothing after it.
fn no_null(v: &mut serde_json::Value) {
    use serde_json::Value;
    let Value::Object(obj) = v else {
        if let Value::Array(items) = v {
            items.iter_mut().for_each(no_null);
        }
        return;
    };
    if let Some(Value::Array(types)) = obj.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types.remove(0);
            obj.insert("type".into(), only);
        }
    }
    let is_null = |s: &Value| s.get("type").and_then(Value::as_str) == Some("null");
    if let Some(Value::Array(any)) = obj.get_mut("anyOf") {
        any.retain(|s| !is_null(s));
        if any.len() == 1 {
            // `anyOf: [{$ref}]` becomes the `$ref` itself, beside this schema's description.
            if let Value::Object(only) = any.remove(0) {
                obj.remove("anyOf");
                obj.extend(only);
            }
        }
    }
    obj.values_mut().for_each(no_null);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in SchemaKind::ALL {
            assert_eq!(kind.name().parse::<SchemaKind>(), Ok(kind));
        }
        assert!("replica".parse::<SchemaKind>().is_err());
    }

    #[test]
    fn a_file_is_classified_as_the_loader_would() {
        let p = Path::new;
        assert_eq!(
            SchemaKind::of_file(p("policies/registries.yaml"), "version: 1\n"),
            SchemaKind::Registries
        );
        assert_eq!(
            SchemaKind::of_file(p("nightly.yaml"), "version: 1\nkind: mirror  # x\n"),
            SchemaKind::Mirror
        );
        assert_eq!(
            SchemaKind::of_file(p("prod.yaml"), "version: 1\n# kind: mirror\n"),
            SchemaKind::Environment
        );
    }

    #[test]
    fn unknown_keys_are_closed_and_required_keys_named() {
        let env = schema(SchemaKind::Environment);
        assert_eq!(env["additionalProperties"], json!(false));
        let required = env["required"].as_array().unwrap();
        for key in ["version", "targets"] {
            assert!(required.contains(&json!(key)), "{key} not required");
        }
        assert_eq!(
            env["oneOf"],
            json!([{ "required": ["source"] }, { "required": ["images"] }])
        );
        assert_eq!(env["properties"]["version"]["const"], json!(1));
        let mirror = schema(SchemaKind::Mirror);
        assert_eq!(mirror["properties"]["kind"]["const"], json!("mirror"));
        assert_eq!(
            mirror["properties"]["existing"]["default"],
            json!("overwrite")
        );
        let registries = schema(SchemaKind::Registries);
        let entry = &registries["$defs"]["Registry"];
        assert_eq!(entry["additionalProperties"], json!(false));
        assert_eq!(entry["properties"]["retries"]["default"], json!(6));
        assert_eq!(
            entry["properties"]["retry_budget"]["default"],
            json!(humantime::format_duration(crate::transport::retry::DEFAULT_BUDGET).to_string())
        );
    }

    #[test]
    fn every_property_is_described() {
        fn walk(v: &serde_json::Value, path: &str, missing: &mut Vec<String>) {
            if let Some(props) = v.get("properties").and_then(|p| p.as_object()) {
                for (k, p) in props {
                    if p.get("description").is_none() {
                        missing.push(format!("{path}.{k}"));
                    }
                }
            }
            if let Some(defs) = v.get("$defs").and_then(|d| d.as_object()) {
                for (k, d) in defs {
                    walk(d, &format!("{path}.$defs.{k}"), missing);
                }
            }
        }
        let mut missing = Vec::new();
        for kind in SchemaKind::ALL {
            walk(&schema(kind), kind.name(), &mut missing);
        }
        assert!(missing.is_empty(), "undocumented keys: {missing:?}");
    }
}
