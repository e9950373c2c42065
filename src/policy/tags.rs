//! policy::tags: tag rules (fixed names, `{source_tag}` templates, `semver`) and the pure rules that decide which rolling version tags may move; protected-tag patterns are [`crate::pattern`]'s, re-exported.

use std::fmt;

use serde::Serialize;

pub use crate::pattern::Pattern;
use crate::reference::Tag;

/// The placeholders a tag template may use.
pub const PLACEHOLDERS: &[&str] = &["{source_tag}", "{environment}"];

/// One entry of a policy's `tags` list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub enum TagRule {
    /// A fixed name that moves with each promotion (`prod`).
    Literal(Tag),
    /// A template filled from the promotion (`{source_tag}`).
    Template(String),
    /// From a source tag `v1.2.3`: `1.2.3`, and the rolling `1.2`, `1`, `latest`.
    Semver,
}

impl TagRule {
    /// Parses a `tags` entry.
    pub fn parse(s: &str) -> Result<TagRule, String> {
        if s == "semver" {
            return Ok(TagRule::Semver);
        }
        if s.contains('{') || s.contains('}') {
            let mut rest = s.to_owned();
            for p in PLACEHOLDERS {
                rest = rest.replace(p, "x");
            }
            if let Some(start) = rest.find('{') {
                let end = rest[start..]
                    .find('}')
                    .map_or(rest.len(), |e| start + e + 1);
                return Err(format!(
                    "unknown placeholder {} (known: {})",
                    &rest[start..end],
                    PLACEHOLDERS.join(", ")
                ));
            }
            Tag::parse(&rest)
                .map_err(|e| format!("{s:?} cannot make a valid tag: {}", e.reason()))?;
            return Ok(TagRule::Template(s.to_owned()));
        }
        Tag::parse(s)
            .map(TagRule::Literal)
            .map_err(|e| format!("{s:?}: {}", e.reason()))
    }

    /// Fills a template; `None` when it needs a source tag and there is none.
    pub fn render(
        template: &str,
        source_tag: Option<&Tag>,
        environment: &str,
    ) -> Option<Result<Tag, String>> {
        if template.contains("{source_tag}") && source_tag.is_none() {
            return None;
        }
        let text = template
            .replace("{source_tag}", source_tag.map_or("", |t| t.as_str()))
            .replace("{environment}", environment);
        Some(Tag::parse(&text).map_err(|e| format!("{template:?} makes {text:?}: {}", e.reason())))
    }
}

impl fmt::Display for TagRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TagRule::Literal(t) => f.write_str(t.as_str()),
            TagRule::Template(t) => f.write_str(t),
            TagRule::Semver => f.write_str("semver"),
        }
    }
}

impl From<TagRule> for String {
    fn from(r: TagRule) -> String {
        r.to_string()
    }
}

pub use crate::pattern::version_of;

/// What `semver` does for one source tag at one target.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SemverTags {
    /// Tags to set: the exact version, then the rolling ones allowed to move.
    pub apply: Vec<Tag>,
    /// Rolling tags held back, with the newer version that holds each.
    pub held: Vec<(Tag, String)>,
}

/// Expands a source tag under the `semver` rule, given the tags the target already has.
///
/// `v1.2.3` gives `1.2.3`, then `1.2`, `1` and `latest` — each rolling tag only if no newer
/// stable version in its range is already tagged there (an older release never steals a rolling
/// tag). A pre-release (`v1.3.0-rc.1`) gives its exact tag and no rolling tag. A source tag
/// that is not a version gives nothing.
pub fn semver_tags(source_tag: &str, existing: &[Tag]) -> SemverTags {
    let Some(v) = version_of(source_tag) else {
        return SemverTags::default();
    };
    let exact = Tag::parse(&v.to_string()).expect("a semver without build metadata is a valid tag");
    let mut out = SemverTags {
        apply: vec![exact],
        held: Vec::new(),
    };
    if !v.pre.is_empty() {
        return out;
    }
    let newer: Vec<semver::Version> = existing
        .iter()
        .filter_map(|t| version_of(t.as_str()))
        .filter(|o| o.pre.is_empty() && *o > v)
        .collect();
    // Rolling tags from narrowest to widest: major.minor, major, latest.
    let ranges = [
        (format!("{}.{}", v.major, v.minor), 2),
        (format!("{}", v.major), 1),
        ("latest".to_owned(), 0),
    ];
    for (name, fixed_parts) in ranges {
        let tag = Tag::parse(&name).expect("rolling version tags are valid");
        let in_range = |o: &&semver::Version| {
            (fixed_parts < 1 || o.major == v.major) && (fixed_parts < 2 || o.minor == v.minor)
        };
        match newer.iter().filter(in_range).max() {
            Some(o) => out.held.push((tag, o.to_string())),
            None => out.apply.push(tag),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(names: &[&str]) -> Vec<Tag> {
        names.iter().map(|n| Tag::parse(n).unwrap()).collect()
    }

    /// (source tag, tags already at the target, applied, held back)
    type SemverCase<'a> = (&'a str, &'a [&'a str], &'a [&'a str], &'a [&'a str]);

    #[test]
    fn semver_expansion_table() {
        let cases: &[SemverCase] = &[
            ("v1.2.3", &[], &["1.2.3", "1.2", "1", "latest"], &[]),
            ("1.2.3", &[], &["1.2.3", "1.2", "1", "latest"], &[]),
            ("v1.3.0-rc.1", &[], &["1.3.0-rc.1"], &[]),
            ("v1.3.0-rc.1", &["1.2.0"], &["1.3.0-rc.1"], &[]),
            (
                "v1.2.3",
                &["1.2.4", "1.2", "1", "latest"],
                &["1.2.3"],
                &["1.2", "1", "latest"],
            ),
            (
                "v1.2.9",
                &["1.3.0", "latest"],
                &["1.2.9", "1.2"],
                &["1", "latest"],
            ),
            ("v1.9.0", &["2.0.0"], &["1.9.0", "1.9", "1"], &["latest"]),
            (
                "v2.0.0",
                &["1.9.9", "v1.10.0", "2.0.0"],
                &["2.0.0", "2.0", "2", "latest"],
                &[],
            ),
            (
                "v1.2.3",
                &["1.2.4-rc.1", "2.0.0-beta"],
                &["1.2.3", "1.2", "1", "latest"],
                &[],
            ),
            ("v1.2.3", &["v1.2.10"], &["1.2.3"], &["1.2", "1", "latest"]),
            ("sha-abc1234", &[], &[], &[]),
            ("latest", &[], &[], &[]),
            ("v1.2", &[], &[], &[]),
        ];
        for (src, existing, apply, held) in cases {
            let got = semver_tags(src, &tags(existing));
            let applied: Vec<&str> = got.apply.iter().map(Tag::as_str).collect();
            let holds: Vec<&str> = got.held.iter().map(|(t, _)| t.as_str()).collect();
            assert_eq!(&applied, apply, "{src} with {existing:?}");
            assert_eq!(&holds, held, "{src} with {existing:?}");
        }
    }

    #[test]
    fn tag_rules_and_templates() {
        assert_eq!(TagRule::parse("semver").unwrap(), TagRule::Semver);
        assert_eq!(
            TagRule::parse("prod").unwrap(),
            TagRule::Literal(Tag::parse("prod").unwrap())
        );
        assert!(TagRule::parse("{source_tag}-{environment}").is_ok());
        assert!(TagRule::parse("{nope}")
            .unwrap_err()
            .contains("unknown placeholder {nope}"));
        assert!(TagRule::parse("-bad").is_err());
        let src = Tag::parse("sha-abc").unwrap();
        assert_eq!(
            TagRule::render("{source_tag}-{environment}", Some(&src), "prod")
                .unwrap()
                .unwrap()
                .as_str(),
            "sha-abc-prod"
        );
        assert!(TagRule::render("{source_tag}", None, "prod").is_none());
    }
}
