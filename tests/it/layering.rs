//! layering: the module graph under `src/` has no import circles, and only the front ends
//! (`cli`, `demo`, `main`) import `report`, the one module that draws on a terminal.
//!
//! Reads every `src/**/*.rs`, maps each file (and each inline `mod x { … }`) to its module
//! path, and collects every path into the crate that it names: `use crate::a::b;`, grouped
//! `use crate::{a::{b, c}, d};`, `super::`/`self::` paths, and inline `crate::x::y(…)`.
//! Comments, strings and character literals are blanked out first. Each path is charged to
//! the longest module prefix it names. Every edge is then judged among the children of the
//! two modules' lowest common ancestor: among the top-level modules when that is the crate
//! root, among siblings otherwise. A module reaching into its own parent or child (a
//! `mod.rs` re-export, a `use super::*` in tests) is therefore never counted. Paths into the
//! crate root itself (`crate::Error`) are not charged to anything: the root is everyone's
//! parent. Dependency-free, so it also builds with a bare `rustc --test`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;

/// The modules allowed to import `report`: the front ends, and `report` itself.
const MAY_IMPORT_REPORT: &[&str] = &["cli", "demo", "main", "report"];

/// A module's path below the crate root; the root is the empty path.
type ModPath = Vec<String>;

#[test]
fn src_has_no_import_circles_and_only_the_front_ends_import_report() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    read_tree(&src, &src, &mut files);
    assert!(
        files.iter().any(|(p, _)| p == "lib.rs"),
        "no src/lib.rs under {}",
        src.display()
    );
    let problems = check(&files);
    assert!(
        problems.is_empty(),
        "the module layering is broken ({} problem(s)):\n\n{}\n",
        problems.len(),
        problems.join("\n\n")
    );
}

/// Every `.rs` file under `dir`, as (path relative to `src/` with `/` separators, text).
fn read_tree(src: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            read_tree(src, &path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            let rel = path.strip_prefix(src).expect("under src/");
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            out.push((rel, text));
        }
    }
}

/// One path into the crate, resolved to the module it lands in.
struct Edge {
    from: ModPath,
    to: ModPath,
    /// Where it is written, for the message: `src/copy/engine.rs:27 crate::report::Progress`.
    at: String,
}

/// Every layering problem in these files (paths relative to `src/`), one message each.
fn check(files: &[(String, String)]) -> Vec<String> {
    let mut known: BTreeSet<ModPath> = BTreeSet::new();
    known.insert(Vec::new());
    let mut refs = Vec::new();
    for (rel, text) in files {
        let module = module_of(rel);
        // The binary is its own crate; it reaches the library as `ferry::`.
        let roots: &[&str] = if rel == "main.rs" {
            &["ferry"]
        } else {
            &["crate"]
        };
        let scan = scan(&module, text, roots);
        known.insert(module);
        known.extend(scan.modules);
        refs.extend(scan.refs.into_iter().map(|r| (rel.as_str(), r)));
    }
    // A path from a name in scope is ours only when that name is a child module.
    refs.retain(|(_, r)| !r.relative || known.contains(&r.target[..r.from.len() + 1]));

    // What the crate root brings into scope (`pub use error::{Error, Result}`) is reached as
    // `crate::Error`: charge that to `error`, not to the root, which is charged to nothing.
    let at_root: BTreeMap<String, Vec<String>> = refs
        .iter()
        .filter(|(_, r)| r.from.is_empty())
        .filter_map(|(_, r)| Some((r.name.clone()?, r.target.clone())))
        .collect();
    let module_of_target = |target: &[String]| {
        (0..=target.len())
            .rev()
            .map(|n| target[..n].to_vec())
            .find(|p| known.contains(p))
            .unwrap_or_default()
    };

    let mut edges = Vec::new();
    for (rel, r) in refs {
        let mut to = module_of_target(&r.target);
        if to.is_empty() && !r.from.is_empty() {
            if let Some(via) = r.target.first().and_then(|n| at_root.get(n)) {
                to = module_of_target(via);
            }
        }
        if to.is_empty() {
            continue;
        }
        edges.push(Edge {
            from: r.from,
            to,
            at: format!("src/{rel}:{} {}", r.line, r.written),
        });
    }

    let mut problems = Vec::new();

    // Judge each edge among the children of the lowest common ancestor of its two ends.
    // parent → (child → child → where)
    let mut graphs: BTreeMap<ModPath, BTreeMap<String, BTreeMap<String, Vec<String>>>> =
        BTreeMap::new();
    for e in &edges {
        let common = e.from.iter().zip(&e.to).take_while(|(a, b)| a == b).count();
        if common == e.from.len() || common == e.to.len() {
            continue; // into its own parent or child
        }
        graphs
            .entry(e.from[..common].to_vec())
            .or_default()
            .entry(e.from[common].clone())
            .or_default()
            .entry(e.to[common].clone())
            .or_default()
            .push(e.at.clone());
    }
    for (parent, graph) in &graphs {
        for circle in circles(graph) {
            problems.push(describe_circle(parent, &circle, graph));
        }
    }

    let mut into_report: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in &edges {
        let importer = e.from.first().map(String::as_str);
        if e.to[0] == "report" && importer.is_some_and(|m| !MAY_IMPORT_REPORT.contains(&m)) {
            into_report
                .entry(e.from.join("::"))
                .or_default()
                .push(e.at.clone());
        }
    }
    for (module, at) in into_report {
        problems.push(format!(
            "`{module}` imports `report`; only {} may (`report` draws and prints for the front \
             ends; progress reaches it through `copy::progress` and `mirror::progress` observers \
             that the front end passes down):\n{}",
            MAY_IMPORT_REPORT.join(", "),
            evidence(&at, "    ")
        ));
    }
    problems
}

/// `lib.rs` is the crate root, `main.rs` the binary, `a/mod.rs` and `a.rs` are `a`.
fn module_of(rel: &str) -> ModPath {
    match rel {
        "lib.rs" => return Vec::new(),
        "main.rs" => return vec!["main".to_string()],
        _ => {}
    }
    let mut parts: Vec<String> = rel.split('/').map(str::to_string).collect();
    let last = parts.pop().unwrap_or_default();
    if last != "mod.rs" {
        parts.push(last.trim_end_matches(".rs").to_string());
    }
    parts
}

/// A path into the crate as written at one place.
struct Ref {
    /// The module it is written in (inline modules included).
    from: ModPath,
    /// Absolute, from the crate root; may end in items rather than modules.
    target: Vec<String>,
    line: usize,
    written: String,
    /// Whether it starts at a name in scope (`use engine::X` in `copy`), which may be a child
    /// module or something outside the crate.
    relative: bool,
    /// The name a `use` brings into scope; `None` for inline paths and globs.
    name: Option<String>,
}

struct Scan {
    /// Inline `mod x { … }` modules, by full path.
    modules: Vec<ModPath>,
    refs: Vec<Ref>,
}

/// The inline modules of one file and every path into the crate that it writes.
fn scan(module: &ModPath, text: &str, roots: &[&str]) -> Scan {
    let toks = tokens(&strip(text));
    let tok = |k: usize| toks.get(k).map_or("", |(t, _)| t.as_str());
    let mut out = Scan {
        modules: Vec::new(),
        refs: Vec::new(),
    };
    // Open inline modules: (name, brace depth outside it).
    let mut open: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let here = |open: &[(String, usize)]| {
        let mut m = module.clone();
        m.extend(open.iter().map(|(n, _)| n.clone()));
        m
    };
    let mut k = 0;
    while k < toks.len() {
        match tok(k) {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                if open.last().is_some_and(|(_, d)| *d == depth) {
                    open.pop();
                }
            }
            "mod" if is_ident(tok(k + 1)) && tok(k + 2) == "{" => {
                open.push((tok(k + 1).to_string(), depth));
                out.modules.push(here(&open));
                k += 2;
                continue;
            }
            "use" => {
                let from = here(&open);
                let mut pos = k + 1;
                let mut paths = Vec::new();
                use_tree(&toks, &mut pos, Vec::new(), &mut paths);
                while pos < toks.len() && tok(pos) != ";" {
                    pos += 1;
                }
                for (segs, line, name) in paths {
                    out.refs
                        .extend(resolve(&from, &segs, roots, line).map(|mut r| {
                            r.name = name;
                            r
                        }));
                }
                k = pos + 1;
                continue;
            }
            t if (roots.contains(&t) || t == "super" || t == "self")
                && tok(k + 1) == "::"
                && !(k > 0 && matches!(tok(k - 1), "::" | "$")) =>
            {
                let mut segs = vec![t.to_string()];
                let mut j = k + 1;
                while tok(j) == "::" && is_ident(tok(j + 1)) {
                    segs.push(tok(j + 1).to_string());
                    j += 2;
                }
                let line = toks[k].1;
                out.refs.extend(resolve(&here(&open), &segs, roots, line));
                k = j;
                continue;
            }
            _ => {}
        }
        k += 1;
    }
    out
}

/// Makes a written path absolute; a path from a name in scope is taken as relative to `from`.
fn resolve(from: &ModPath, segs: &[String], roots: &[&str], line: usize) -> Option<Ref> {
    let first = segs.first()?;
    let relative = !(roots.contains(&first.as_str()) || first == "self" || first == "super");
    let (mut target, rest) = if roots.contains(&first.as_str()) {
        (Vec::new(), 1)
    } else if first == "self" {
        (from.clone(), 1)
    } else if first == "super" {
        let ups = segs.iter().take_while(|s| *s == "super").count();
        let mut t = from.clone();
        for _ in 0..ups {
            t.pop()?;
        }
        (t, ups)
    } else {
        (from.clone(), 0)
    };
    // `use a::{self, b}` names `a` itself.
    target.extend(segs[rest..].iter().filter(|s| *s != "self").cloned());
    Some(Ref {
        from: from.clone(),
        target,
        line,
        written: segs
            .iter()
            .enumerate()
            .filter(|(i, s)| *i == 0 || *s != "self")
            .map(|(_, s)| s.clone())
            .collect::<Vec<_>>()
            .join("::"),
        relative,
        name: None,
    })
}

/// Parses one use tree at `pos`, pushing each leaf path with the line of its last segment and
/// the name it brings into scope (`None` for a glob).
fn use_tree(
    toks: &[(String, usize)],
    pos: &mut usize,
    prefix: Vec<String>,
    out: &mut Vec<(Vec<String>, usize, Option<String>)>,
) {
    let tok = |k: usize| toks.get(k).map_or("", |(t, _)| t.as_str());
    let mut path = prefix;
    let mut line = toks.get(*pos).map_or(0, |t| t.1);
    if tok(*pos) == "::" {
        *pos += 1;
    }
    loop {
        match tok(*pos) {
            "{" => {
                *pos += 1;
                while *pos < toks.len() && !matches!(tok(*pos), "}" | ";") {
                    let before = *pos;
                    use_tree(toks, pos, path.clone(), out);
                    if tok(*pos) == "," {
                        *pos += 1;
                    }
                    if *pos == before {
                        *pos += 1; // not a use tree: step over it rather than loop
                    }
                }
                if tok(*pos) == "}" {
                    *pos += 1;
                }
                return;
            }
            "*" => {
                *pos += 1;
                out.push((path, line, None));
                return;
            }
            t if is_ident(t) => {
                path.push(t.to_string());
                line = toks[*pos].1;
                *pos += 1;
                if tok(*pos) == "::" {
                    *pos += 1;
                    continue;
                }
                let mut name = t.to_string();
                if tok(*pos) == "as" {
                    name = tok(*pos + 1).to_string();
                    *pos += 2;
                }
                out.push((path, line, Some(name)));
                return;
            }
            _ => return,
        }
    }
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Identifiers, `::`, and single punctuation characters, each with its line (1-based).
fn tokens(text: &str) -> Vec<(String, usize)> {
    let c: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch.is_alphanumeric() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push((c[start..i].iter().collect(), line));
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push(("::".to_string(), line));
            i += 2;
        } else {
            out.push((ch.to_string(), line));
            i += 1;
        }
    }
    out
}

/// The text with comments, string and character literals blanked (newlines kept, so that
/// line numbers still hold).
fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut i = 0;
    while i < c.len() {
        let at = |k: usize| c.get(k).copied().unwrap_or('\0');
        let after_ident = i > 0 && ident(c[i - 1]);
        if c[i] == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
                out.push(' ');
            }
            continue;
        }
        if c[i] == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            continue;
        }
        // Literal prefixes: b"…", c"…", b'…', r"…", r#"…"#, br#"…"#, cr"…".
        let mut j = i;
        if !after_ident && matches!(c[i], 'b' | 'c' | 'r') {
            if matches!(c[j], 'b' | 'c') {
                j += 1;
            }
            if at(j) == 'r' {
                let mut k = j + 1;
                while at(k) == '#' {
                    k += 1;
                }
                if at(k) == '"' {
                    let hashes = k - j - 1;
                    let mut end = k + 1;
                    while end < c.len()
                        && !(c[end] == '"' && (1..=hashes).all(|h| at(end + h) == '#'))
                    {
                        end += 1;
                    }
                    let end = (end + 1 + hashes).min(c.len());
                    for &ch in &c[i..end] {
                        blank(&mut out, ch);
                    }
                    i = end;
                    continue;
                }
            }
            if j == i || !matches!(at(j), '"' | '\'') {
                j = i; // an identifier, not a literal
            }
        }
        match at(j) {
            '"' if j > i || c[i] == '"' => {
                let mut end = j + 1;
                while end < c.len() && c[end] != '"' {
                    end += if c[end] == '\\' { 2 } else { 1 };
                }
                let end = (end + 1).min(c.len());
                for &ch in &c[i..end] {
                    blank(&mut out, ch);
                }
                i = end;
            }
            '\'' if j > i || c[i] == '\'' => {
                // A character literal, or else a lifetime or label, which stays.
                let end = if at(j + 1) == '\\' {
                    let mut e = j + 3;
                    while e < c.len() && c[e] != '\'' {
                        e += 1;
                    }
                    Some(e + 1)
                } else if at(j + 2) == '\'' {
                    Some(j + 3)
                } else {
                    None
                };
                match end {
                    Some(end) => {
                        let end = end.min(c.len());
                        for &ch in &c[i..end] {
                            blank(&mut out, ch);
                        }
                        i = end;
                    }
                    None => {
                        out.push(c[i]);
                        i += 1;
                    }
                }
            }
            _ => {
                out.push(c[i]);
                i += 1;
            }
        }
    }
    out
}

/// The strongly connected sets of more than one node (Tarjan), each sorted.
fn circles(graph: &BTreeMap<String, BTreeMap<String, Vec<String>>>) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        graph: &'a BTreeMap<String, BTreeMap<String, Vec<String>>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flat_map(|m| m.keys()) {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut set = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    set.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if set.len() > 1 {
                    set.sort();
                    self.found.push(set);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.found.sort();
    t.found
}

/// One strongly connected set as a message: a shortest round trip through each import
/// inside it (so every import that would have to go is named), then where each is written.
fn describe_circle(
    parent: &ModPath,
    members: &[String],
    graph: &BTreeMap<String, BTreeMap<String, Vec<String>>>,
) -> String {
    let inside = |a: &str, b: &str| {
        members.iter().any(|m| m == a)
            && members.iter().any(|m| m == b)
            && graph.get(a).is_some_and(|m| m.contains_key(b))
    };
    // Breadth-first from `from` to `to` inside the set: the modules on the way, both ends included.
    let shortest = |from: &str, to: &str| -> Vec<String> {
        let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = VecDeque::from([from]);
        while let Some(v) = queue.pop_front() {
            if v == to {
                break;
            }
            for w in members.iter().map(String::as_str) {
                if inside(v, w) && w != from && !came_from.contains_key(w) {
                    came_from.insert(w, v);
                    queue.push_back(w);
                }
            }
        }
        let mut way = vec![to.to_string()];
        let mut v = to;
        while v != from {
            v = came_from[v];
            way.push(v.to_string());
        }
        way.reverse();
        way
    };
    let mut trips: BTreeSet<(usize, Vec<String>)> = BTreeSet::new();
    for a in members {
        for b in members {
            if a != b && inside(a, b) {
                let mut trip = vec![a.clone()];
                trip.extend(shortest(b, a));
                // The same circle read from its smallest module, so that rotations collapse.
                trip.pop();
                let least = (0..trip.len()).min_by_key(|&i| &trip[i]).unwrap_or(0);
                trip.rotate_left(least);
                trip.push(trip[0].clone());
                trips.insert((trip.len(), trip));
            }
        }
    }

    let place = if parent.is_empty() {
        "among the top-level modules".to_string()
    } else {
        format!("among the children of `{}`", parent.join("::"))
    };
    let mut text = if trips.len() == 1 {
        let (_, trip) = trips.iter().next().expect("one");
        format!("import circle {place}: {}", trip.join(" → "))
    } else {
        let mut t = format!(
            "import circles {place} (all of {{{}}} reach each other):",
            members.join(", ")
        );
        for (_, trip) in &trips {
            t.push_str(&format!("\n    {}", trip.join(" → ")));
        }
        t
    };
    text.push_str("\n  where:");
    for a in members {
        for b in members {
            if a != b && inside(a, b) {
                text.push_str(&format!("\n  {a} → {b}:\n"));
                text.push_str(&evidence(&graph[a][b], "    "));
            }
        }
    }
    text
}

/// The first few places, one a line, and how many more there are.
fn evidence(at: &[String], indent: &str) -> String {
    let mut unique: Vec<&String> = Vec::new();
    for a in at {
        if !unique.contains(&a) {
            unique.push(a);
        }
    }
    const SHOWN: usize = 4;
    let mut text = unique
        .iter()
        .take(SHOWN)
        .map(|a| format!("{indent}{a}"))
        .collect::<Vec<_>>()
        .join("\n");
    if unique.len() > SHOWN {
        text.push_str(&format!("\n{indent}… and {} more", unique.len() - SHOWN));
    }
    text
}

/// Self-tests of the checker on small in-memory crates.
mod checker {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect()
    }

    fn targets(text: &str) -> Vec<String> {
        scan(&vec!["m".to_string()], text, &["crate"])
            .refs
            .into_iter()
            .map(|r| r.target.join("::"))
            .collect()
    }

    #[test]
    fn a_grouped_use_over_several_lines_is_every_leaf() {
        let t = targets(
            "pub(crate) use crate::{\n    a::{b, c as d, e::{self, F}},\n    g::*,\n    h,\n};\nfn x() {}",
        );
        assert_eq!(t, ["a::b", "a::c", "a::e", "a::e::F", "g", "h"]);
    }

    #[test]
    fn inline_and_relative_paths_are_found_and_made_absolute() {
        let t = targets(
            "fn f() -> crate::a::B<T> { let x = crate::c::d::f(1); super::s::T::new() }\n\
             #[attr(transform = super::schema::require)] struct S;",
        );
        assert_eq!(t, ["a::B", "c::d::f", "s::T::new", "schema::require"]);
    }

    #[test]
    fn comments_strings_and_characters_are_not_imports() {
        let t = targets(
            "// use crate::a;\n/* use crate::b; /* nested crate::c */ */\n\
             const S: &str = \"crate::d::x \\\" crate::e\";\nconst R: &str = r#\"crate::f \" \"#;\n\
             const Q: char = '\"'; const B: &[u8] = b\"crate::g\"; fn l<'a>(x: &'a str) {}\n\
             /// [`crate::h`]\nuse crate::real;",
        );
        assert_eq!(t, ["real"]);
    }

    #[test]
    fn inline_modules_resolve_super_to_the_file() {
        let s = scan(
            &vec!["p".to_string(), "f".to_string()],
            "mod tests {\n    use super::*;\n    use super::super::g::X;\n}\nuse self::h::Y;",
            &["crate"],
        );
        assert_eq!(s.modules, [vec!["p", "f", "tests"]]);
        let r: Vec<_> = s
            .refs
            .iter()
            .map(|r| (r.from.join("::"), r.target.join("::"), r.line))
            .collect();
        assert_eq!(
            r,
            [
                ("p::f::tests".into(), "p::f".into(), 2),
                ("p::f::tests".into(), "p::g::X".into(), 3),
                ("p::f".into(), "p::f::h::Y".into(), 5),
            ]
        );
    }

    #[test]
    fn a_circle_among_top_level_modules_is_named_with_its_places() {
        let p = check(&files(&[
            ("lib.rs", "pub mod a; pub mod b; pub mod c; pub use a::A;"),
            ("a.rs", "use crate::b::B;"),
            ("b/mod.rs", "mod inner;"),
            ("b/inner.rs", "fn f() { crate::c::g() }"),
            // Through the root's re-export: still an import of `a`.
            ("c.rs", "use crate::{\n    A,\n};"),
        ]));
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(
            p[0].starts_with("import circle among the top-level modules: a → b → c → a"),
            "{}",
            p[0]
        );
        assert!(p[0].contains("src/b/inner.rs:1 crate::c::g"), "{}", p[0]);
        assert!(p[0].contains("src/c.rs:2 crate::A"), "{}", p[0]);
    }

    #[test]
    fn a_circle_among_siblings_counts_but_parent_and_child_do_not() {
        let p = check(&files(&[
            ("lib.rs", "pub mod p;"),
            ("p/mod.rs", "mod x; mod y; pub use x::X; use self::y::Y;"),
            ("p/x.rs", "use super::{y::Y, Z};"),
            ("p/y.rs", "use crate::p::{self, x};"),
        ]));
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(
            p[0].starts_with("import circle among the children of `p`: x → y → x"),
            "{}",
            p[0]
        );
        let p = check(&files(&[
            ("lib.rs", "pub mod p;"),
            ("p/mod.rs", "mod x; pub use x::X;"),
            (
                "p/x.rs",
                "use super::Z;\nmod tests { use super::*; use crate::p::x::X; }",
            ),
        ]));
        assert!(p.is_empty(), "{p:#?}");
    }

    #[test]
    fn only_the_front_ends_import_report() {
        let p = check(&files(&[
            ("lib.rs", "pub mod cli; pub mod copy; pub mod report;"),
            ("main.rs", "use ferry::report::Bars;"),
            ("cli.rs", "use crate::report::Bars;"),
            ("report.rs", "use crate::copy::Observer;"),
            ("copy/mod.rs", "mod engine;"),
            (
                "copy/engine.rs",
                "pub trait Observer {}\nfn f(p: &crate::report::Bars) {}",
            ),
        ]));
        assert!(
            p.iter()
                .any(|m| m.starts_with("`copy::engine` imports `report`")
                    && m.contains("src/copy/engine.rs:2 crate::report::Bars")),
            "{p:#?}"
        );
        assert!(
            !p.iter()
                .any(|m| m.starts_with("`cli`") || m.starts_with("`main`")),
            "{p:#?}"
        );
    }
}
