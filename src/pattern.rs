//! pattern: tag patterns (`*` matches any run of characters, `?` any one), the one glob both policies (protected tags) and ECR (immutability exclusion filters) use, and version tags (`v1.2.3`).
//!
//! A leaf, so that `policy` and `cloud` both build on it without importing each other.

use serde::Serialize;

/// A protected-tag pattern: `*` matches any run of characters, `?` any one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct Pattern(String);

impl Pattern {
    /// Validates a pattern: tag characters plus `*` and `?`.
    pub fn parse(s: &str) -> Result<Pattern, String> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-*?".contains(c));
        if ok {
            Ok(Pattern(s.to_owned()))
        } else {
            Err(format!(
                "{s:?} is not a tag pattern (tag characters, '*' and '?')"
            ))
        }
    }

    /// True if the tag matches the whole pattern.
    pub fn matches(&self, tag: &str) -> bool {
        glob(self.0.as_bytes(), tag.as_bytes())
    }
}

/// A version read from a tag: `v1.2.3` or `1.2.3` (build metadata cannot appear in a tag).
pub fn version_of(tag: &str) -> Option<semver::Version> {
    let v = tag.strip_prefix('v').unwrap_or(tag);
    semver::Version::parse(v)
        .ok()
        .filter(|v| v.build.is_empty())
}

impl From<Pattern> for String {
    fn from(p: Pattern) -> String {
        p.0
    }
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    // Iterative wildcard match with one backtrack point: linear in practice, no recursion.
    let (mut pi, mut si) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_pattern_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("v*", "v1.2.3", true),
            ("v*", "v", true),
            ("v*", "prod", false),
            ("sha-*", "sha-abc1234", true),
            ("sha-*", "sha", false),
            ("*-rc*", "1.3.0-rc.1", true),
            ("1.?.*", "1.2.3", true),
            ("1.?.*", "1.23.3", false),
            ("prod", "prod", true),
            ("prod", "prod2", false),
            ("*", "anything", true),
        ];
        for (p, t, want) in cases {
            assert_eq!(Pattern::parse(p).unwrap().matches(t), *want, "{p} vs {t}");
        }
        for bad in ["", "a/b", "v[0-9]", "x y"] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?}");
        }
    }
}
