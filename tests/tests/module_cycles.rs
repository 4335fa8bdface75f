//! Layers point one way: within each workspace crate, no two top-level modules import each
//! other, directly or round a loop. A module that needs something from a module above it
//! moves the shared part down into a module of its own.
//!
//! The check reads the source as plain text: every `crate::…` and `super::…` path outside
//! comments and string literals (in `use` declarations and inline), maps each file under
//! `src/` to its top-level module (`foo.rs`, `foo/mod.rs` and `foo/**/*.rs` all belong to
//! `foo`; `lib.rs` and `main.rs` are the crate root, above every module), and looks for
//! strongly connected components in the graph of top-level modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use adoport_tests::source_tree::{rust_files, workspace_crates};

/// The module path of a file relative to `src/` (`kinds/git.rs` → `[kinds, git]`,
/// `kinds/mod.rs` → `[kinds]`, `lib.rs` → `[]`); `None` for files that are no module of the
/// library (binaries under `src/bin`).
fn module_path(relative: &Path) -> Option<Vec<String>> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.first().is_some_and(|p| p == "bin") {
        return None;
    }
    let last = parts.pop()?;
    let stem = last.strip_suffix(".rs")?;
    if parts.is_empty() && (stem == "lib" || stem == "main") {
        return Some(Vec::new());
    }
    if stem != "mod" {
        parts.push(stem.to_string());
    }
    Some(parts)
}

/// The text of a Rust file with comments, string and char literals blanked out (replaced by
/// spaces, so that nothing inside them reads as a path or a brace).
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
        } else if c == 'r'
            && raw_string_prefix(&chars, i)
            && raw_string_hashes(&chars, i + 1).is_some()
        {
            // A raw string: r"…", r#"…"#, … (a b or c prefix was kept as code: harmless).
            let hashes = raw_string_hashes(&chars, i + 1).unwrap_or(0);
            let closing: Vec<char> = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let mut j = i + 2 + hashes;
            while j < chars.len() && !chars[j..].starts_with(&closing) {
                j += 1;
            }
            let end = (j + closing.len()).min(chars.len());
            for &ch in &chars[i..end] {
                blank(&mut out, ch);
            }
            i = end;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
                if i < chars.len() {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{1F600}') or a lifetime ('a), which is kept.
            if next == Some('\\') {
                let mut j = i + 2;
                while j < chars.len() && chars[j] != '\'' {
                    j += 1;
                }
                for _ in i..=j.min(chars.len() - 1) {
                    out.push(' ');
                }
                i = j + 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                out.push_str("   ");
                i += 3;
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Whether the `r` at `at` opens a raw string literal: it starts a word, or follows a lone
/// `b` or `c` (`br"…"`, `cr"…"`).
fn raw_string_prefix(chars: &[char], at: usize) -> bool {
    let starts_word = |i: usize| i == 0 || !is_ident_char(chars[i - 1]);
    starts_word(at) || (at >= 1 && matches!(chars[at - 1], 'b' | 'c') && starts_word(at - 1))
}

/// How many `#` open a raw string whose `r` stands before `at`, if a raw string opens there.
fn raw_string_hashes(chars: &[char], at: usize) -> Option<usize> {
    let mut hashes = 0;
    while chars.get(at + hashes) == Some(&'#') {
        hashes += 1;
    }
    (chars.get(at + hashes) == Some(&'"')).then_some(hashes)
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Reads an identifier starting at `i` (after whitespace); returns it and the index after it.
fn ident_at(chars: &[char], mut i: usize) -> (String, usize) {
    while chars.get(i).is_some_and(|c| c.is_whitespace()) {
        i += 1;
    }
    let start = i;
    while chars.get(i).is_some_and(|&c| is_ident_char(c)) {
        i += 1;
    }
    (chars[start..i].iter().collect(), i)
}

/// Skips whitespace, then `::` if it stands there.
fn path_separator(chars: &[char], mut i: usize) -> Option<usize> {
    while chars.get(i).is_some_and(|c| c.is_whitespace()) {
        i += 1;
    }
    (chars.get(i) == Some(&':') && chars.get(i + 1) == Some(&':')).then_some(i + 2)
}

/// The first segments of every path in a `{…}` use group starting at `open` (the `{`).
fn group_heads(chars: &[char], open: usize) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut expect_head = true;
    let mut i = open;
    while i < chars.len() {
        match chars[i] {
            '{' => {
                depth += 1;
                expect_head = depth == 1;
                i += 1;
            }
            '}' => {
                depth -= 1;
                i += 1;
                if depth == 0 {
                    break;
                }
            }
            ',' => {
                expect_head = depth == 1;
                i += 1;
            }
            c if is_ident_char(c) && expect_head => {
                let (name, after) = ident_at(chars, i);
                heads.push(name);
                expect_head = false;
                i = after;
            }
            _ => i += 1,
        }
    }
    heads
}

/// The top-level modules a file names through `crate::` and `super::` paths, given the file's
/// module path. Inline `mod name { … }` blocks are followed, so `super::` inside a file's
/// `mod tests` means the file's own module.
fn referenced_top_modules(code: &str, file_module: &[String]) -> BTreeSet<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut found = BTreeSet::new();
    // The inline modules we are in: (name, brace depth inside them).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            depth += 1;
            i += 1;
            continue;
        }
        if c == '}' {
            if inline.last().is_some_and(|(_, d)| *d == depth) {
                inline.pop();
            }
            depth = depth.saturating_sub(1);
            i += 1;
            continue;
        }
        let boundary = i == 0 || !(is_ident_char(chars[i - 1]) || chars[i - 1] == '$');
        if !(boundary && is_ident_char(c)) {
            i += 1;
            continue;
        }
        let (word, after) = ident_at(&chars, i);
        match word.as_str() {
            "mod" => {
                let (name, after_name) = ident_at(&chars, after);
                let mut j = after_name;
                while chars.get(j).is_some_and(|c| c.is_whitespace()) {
                    j += 1;
                }
                if chars.get(j) == Some(&'{') {
                    inline.push((name, depth + 1));
                }
                i = after_name;
            }
            "crate" | "super" => {
                let mut base: Vec<String> = if word == "crate" {
                    Vec::new()
                } else {
                    let mut here = file_module.to_vec();
                    here.extend(inline.iter().map(|(n, _)| n.clone()));
                    here.pop();
                    here
                };
                let mut j = after;
                // `super::super::…`
                while let Some(k) = path_separator(&chars, j) {
                    let (next, after_next) = ident_at(&chars, k);
                    if next == "super" && word == "super" {
                        base.pop();
                        j = after_next;
                    } else {
                        break;
                    }
                }
                let Some(k) = path_separator(&chars, j) else {
                    i = after;
                    continue;
                };
                if let Some(top) = base.first() {
                    found.insert(top.clone());
                } else {
                    let mut k2 = k;
                    while chars.get(k2).is_some_and(|c| c.is_whitespace()) {
                        k2 += 1;
                    }
                    if chars.get(k2) == Some(&'{') {
                        found.extend(group_heads(&chars, k2));
                    } else {
                        found.insert(ident_at(&chars, k).0);
                    }
                }
                i = after;
            }
            _ => i = after,
        }
    }
    found
}

/// The graph of top-level modules of the crate whose sources are under `src`: module → the
/// modules it imports (self-imports left out; names that are no top-level module, such as
/// items of the crate root, are dropped).
fn module_graph(files: &[(PathBuf, String)]) -> BTreeMap<String, BTreeSet<String>> {
    let mut modules: Vec<(Vec<String>, &str)> = Vec::new();
    for (relative, text) in files {
        if let Some(path) = module_path(relative) {
            modules.push((path, text));
        }
    }
    let tops: BTreeSet<String> = modules
        .iter()
        .filter_map(|(p, _)| p.first().cloned())
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> =
        tops.iter().map(|t| (t.clone(), BTreeSet::new())).collect();
    for (path, text) in &modules {
        let Some(from) = path.first() else {
            continue; // the crate root stands above every module
        };
        for to in referenced_top_modules(&code_only(text), path) {
            if &to != from && tops.contains(&to) {
                graph.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    graph
}

/// The strongly connected components with more than one module (Tarjan's algorithm).
fn knots(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    struct State<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<BTreeSet<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = BTreeSet::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.insert(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !state.index.contains_key(v.as_str()) {
            visit(&mut state, v);
        }
    }
    state.found
}

/// One shortest loop through the first module of a knot, as `a → b → a`.
fn a_cycle(graph: &BTreeMap<String, BTreeSet<String>>, knot: &BTreeSet<String>) -> String {
    let start = knot.iter().next().expect("a knot has modules");
    let mut previous: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.as_str()]);
    let mut last = None;
    'search: while let Some(v) = queue.pop_front() {
        for w in graph.get(v).into_iter().flatten() {
            if !knot.contains(w) {
                continue;
            }
            if w == start {
                last = Some(v);
                break 'search;
            }
            if !previous.contains_key(w.as_str()) {
                previous.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    let mut path = vec![start.as_str()];
    let mut at = last.expect("a knot loops back to its start");
    while at != start {
        path.push(at);
        at = previous[at];
    }
    path.push(start);
    let end = path.len() - 1;
    path[1..end].reverse();
    path.join(" → ")
}

/// The knots of one crate's `src/` files, each as `crate: a → b → a (all of: a, b)`.
fn check_crate(name: &str, files: &[(PathBuf, String)]) -> Vec<String> {
    let graph = module_graph(files);
    knots(&graph)
        .iter()
        .map(|k| {
            let members: Vec<&str> = k.iter().map(String::as_str).collect();
            format!(
                "{name}: {} (all of: {})",
                a_cycle(&graph, k),
                members.join(", ")
            )
        })
        .collect()
}

fn crate_sources(src: &Path) -> Vec<(PathBuf, String)> {
    let mut paths = Vec::new();
    rust_files(src, &mut paths);
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("a readable source file");
            (p.strip_prefix(src).expect("under src").to_path_buf(), text)
        })
        .collect()
}

#[test]
fn no_crate_has_a_cycle_between_its_top_level_modules() {
    let root = adoport_tests::source_tree::workspace_root();
    let crates = workspace_crates(&root);
    assert!(crates.len() >= 7, "found only these crates: {crates:?}");
    let mut knots = Vec::new();
    let mut modules = 0;
    for krate in &crates {
        let files = crate_sources(&root.join(krate).join("src"));
        modules += module_graph(&files).len();
        knots.extend(check_crate(krate, &files));
    }
    assert!(modules > 50, "read only {modules} top-level modules");
    assert!(
        knots.is_empty(),
        "top-level modules import each other in a loop; move the part both need into a module \
         below them:\n  {}",
        knots.join("\n  ")
    );
}

fn sources(files: &[(&str, &str)]) -> Vec<(PathBuf, String)> {
    files
        .iter()
        .map(|(p, t)| (PathBuf::from(p), t.to_string()))
        .collect()
}

#[test]
fn a_loop_through_use_groups_super_and_inline_paths_is_named() {
    let files = sources(&[
        ("lib.rs", "pub mod a; pub mod b; pub mod c; pub mod d;"),
        ("a.rs", "use crate::{b::{X, Y}, d};"),
        // `super::` from a file in a folder reaches the crate root's modules.
        ("b/mod.rs", "mod inner;"),
        ("b/inner.rs", "fn f() { super::super::c::g() }"),
        ("c.rs", "const N: usize = crate::a::N;"),
        ("d.rs", "pub fn d() {}"),
    ]);
    assert_eq!(
        check_crate("demo", &files),
        vec!["demo: a → b → c → a (all of: a, b, c)"]
    );
}

#[test]
fn comments_strings_and_a_files_own_tests_are_no_imports() {
    let files = sources(&[
        ("lib.rs", "pub mod a; pub mod b;"),
        (
            "a.rs",
            "//! See [`crate::b`].\n\
             /* crate::b::X /* nested */ crate::b */\n\
             const S: &str = \"crate::b::X\";\n\
             const R: &str = r#\"super::b\"#;\n\
             const C: char = '\"'; fn f<'a>(x: &'a str) {}\n\
             macro_rules! m { () => { $crate::b::X } }\n\
             #[cfg(test)] mod tests { use super::*; use super::super::a; }",
        ),
        ("b.rs", "use crate::a::A;"),
    ]);
    let graph = module_graph(&files);
    assert_eq!(graph["a"], BTreeSet::new(), "{graph:?}");
    assert_eq!(graph["b"], BTreeSet::from(["a".to_string()]));
    // And the same file with one real import is a loop.
    let mut files = files;
    files[1].1.push_str("\nuse crate::b::B;");
    assert_eq!(
        check_crate("demo", &files),
        vec!["demo: a → b → a (all of: a, b)"]
    );
}
