//! docs: every page under `docs/` is linked from README.md, and every relative link in README.md
//! and `docs/*.md` points at a file that exists (and, for a `#anchor` into a Markdown page, at a
//! heading that exists).
//!
//! Plain std: links are `[text](target)` and `[label]: target` outside fenced code blocks and
//! inline code; `http(s)://` and `mailto:` targets are not checked. Anchors are GitHub's heading
//! slugs: lowercase, punctuation dropped, spaces made `-`, `-1`, `-2`… for repeats.

use std::path::{Path, PathBuf};

use crate::support::root;

/// The Markdown pages checked: README.md and every `docs/*.md`.
fn pages() -> Vec<PathBuf> {
    let mut out = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    out.extend(docs);
    out
}

/// Removes inline code spans (`` `...` ``) from a line, so that code is never read as a link.
fn strip_inline_code(line: &str) -> String {
    let mut out = String::new();
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
        } else if !in_code {
            out.push(c);
        }
    }
    out
}

/// Every link target in a Markdown text, with its line number, outside fenced code blocks.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (n, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let line = strip_inline_code(raw);
        // Reference definitions: `[label]: target`.
        let t = line.trim_start();
        if t.starts_with('[') {
            if let Some(end) = t.find("]:") {
                let target = t[end + 2..].split_whitespace().next().unwrap_or("");
                if !target.is_empty() {
                    out.push((n + 1, target.trim_matches(['<', '>']).to_owned()));
                }
                continue;
            }
        }
        // Inline links: `](target)` or `](target "title")`.
        let mut rest = line.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(close) = after.find(')') else {
                break;
            };
            let target = after[..close].split_whitespace().next().unwrap_or("");
            if !target.is_empty() {
                out.push((n + 1, target.trim_matches(['<', '>']).to_owned()));
            }
            rest = &after[close..];
        }
    }
    out
}

/// GitHub's anchor for each heading of a Markdown text (outside fenced code blocks).
fn anchors(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut fenced = false;
    for raw in text.lines() {
        let t = raw.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        if fenced || !t.starts_with('#') {
            continue;
        }
        let title = t.trim_start_matches('#');
        if !title.starts_with(' ') {
            continue;
        }
        let slug: String = title
            .trim()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                '-' | '_' => Some(c),
                c if c.is_alphanumeric() => Some(c.to_ascii_lowercase()),
                _ => None,
            })
            .collect::<String>()
            .to_lowercase();
        let repeats = out
            .iter()
            .filter(|a| {
                **a == slug
                    || a.strip_prefix(&format!("{slug}-"))
                        .is_some_and(|n| n.parse::<u32>().is_ok())
            })
            .count();
        out.push(if repeats == 0 {
            slug
        } else {
            format!("{slug}-{repeats}")
        });
    }
    out
}

/// True for a target that names a file in this repository (or an anchor in the same page).
fn is_relative(target: &str) -> bool {
    !(target.contains("://") || target.starts_with("mailto:") || target.starts_with('/'))
}

/// The file a relative target names, seen from `page` (the page itself for `#anchor`).
fn resolve(page: &Path, target: &str) -> PathBuf {
    let path = target.split(['#', '?']).next().unwrap_or("");
    if path.is_empty() {
        return page.to_owned();
    }
    page.parent().expect("a page has a directory").join(path)
}

#[test]
fn every_docs_page_is_linked_from_the_readme() {
    let readme = root().join("README.md");
    let text = std::fs::read_to_string(&readme).expect("README.md");
    let linked: Vec<PathBuf> = links(&text)
        .into_iter()
        .filter(|(_, t)| is_relative(t))
        .filter_map(|(_, t)| resolve(&readme, &t).canonicalize().ok())
        .collect();
    let missing: Vec<String> = pages()
        .into_iter()
        .skip(1)
        .filter(|p| {
            let p = p.canonicalize().expect("listed pages exist");
            !linked.contains(&p)
        })
        .map(|p| p.strip_prefix(root()).unwrap_or(&p).display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "docs pages not linked from README.md: {}",
        missing.join(", ")
    );
}

#[test]
fn relative_links_point_at_files_that_exist() {
    let mut broken = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("page is readable");
        for (line, target) in links(&text) {
            if !is_relative(&target) {
                continue;
            }
            let shown = page.strip_prefix(root()).unwrap_or(&page).display();
            let file = resolve(&page, &target);
            if !file.exists() {
                broken.push(format!("{shown}:{line}: {target}"));
                continue;
            }
            let Some((_, anchor)) = target.split_once('#') else {
                continue;
            };
            if file.extension().is_some_and(|e| e == "md") {
                let text = std::fs::read_to_string(&file).expect("linked page is readable");
                if !anchors(&text).iter().any(|a| a == anchor) {
                    broken.push(format!("{shown}:{line}: {target} (no such heading)"));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "relative links to files or headings that do not exist:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_link_reader_finds_links_and_skips_code() {
    let text = "see [a](docs/a.md) and [b](b.md#x \"t\")\n`[c](c.md)`\n```\n[d](d.md)\n```\n[e]: e.md\n[f](https://x.io/f.md) [g](#g)\n";
    let found: Vec<String> = links(text).into_iter().map(|(_, t)| t).collect();
    assert_eq!(
        found,
        ["docs/a.md", "b.md#x", "e.md", "https://x.io/f.md", "#g"]
    );
    let relative: Vec<&String> = found.iter().filter(|t| is_relative(t)).collect();
    assert_eq!(relative, ["docs/a.md", "b.md#x", "e.md", "#g"]);
    let headings = "# Policy files\n## `registries.yaml`\n```\n# not a heading\n```\n## Credentials (401, 403)\n## Environment policy (`ENV.yaml`)\n## Credentials (401, 403)\n#hashtag\n";
    assert_eq!(
        anchors(headings),
        [
            "policy-files",
            "registriesyaml",
            "credentials-401-403",
            "environment-policy-envyaml",
            "credentials-401-403-1"
        ]
    );
}
