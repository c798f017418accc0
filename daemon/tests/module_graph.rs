//! The library's module graph: which module of `daemon/src` names which other
//! module (`crate::x` in code outside `#[cfg(test)]` blocks), checked for
//! cycles and for the layering `lib.rs` documents (core below touchpoints
//! below front ends).
//!
//! `cargo test --test module_graph -- --nocapture` prints the graph, one
//! `module -> dependencies` line per module, and the line counts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layer of every module: a module may only name modules of its own or a
/// lower layer. 0 core (pure logic and formats), 1 touchpoints and
/// operations, 2 front ends.
const LAYERS: &[(&str, u8)] = &[
    ("atomic_file", 0),
    ("digest", 0),
    ("failure", 0),
    ("slot", 0),
    ("lifecycle", 0),
    ("manifest", 0),
    ("trust", 0),
    ("events", 0),
    ("state", 0),
    ("uboot_env", 1),
    ("mounts", 1),
    ("config", 1),
    ("transport", 1),
    ("bundle", 1),
    ("blocks", 1),
    ("install", 1),
    ("delta", 1),
    ("journal", 1),
    ("progress", 1),
    ("health", 1),
    ("updater", 1),
    ("fleet", 1),
    ("service", 2),
    ("daemon", 2),
    ("dbus", 2),
    ("fleet::device", 2),
    ("fleet::operator", 2),
    ("client", 2),
    ("cli", 2),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Module path (`fleet::device`, `uboot_env`) of a source file.
fn module_of(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src()).ok()?;
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().map(String::as_str) == Some("mod") {
        parts.pop();
    }
    if parts == ["lib"] || parts == ["main"] {
        return None;
    }
    Some(parts.join("::"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text of a file without its `#[cfg(test)]` items (the attribute up to
/// the end of the braced item that follows it) and without comments.
fn code_outside_tests(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        // Skip to the item's opening brace (or `;` for `mod x;`), then to its
        // matching close.
        let open = after.find(['{', ';']).unwrap_or(after.len());
        if after[open..].starts_with(';') {
            rest = &after[open + 1..];
            continue;
        }
        let mut depth = 0usize;
        let mut end = after.len();
        for (i, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn graph() -> BTreeMap<String, (BTreeSet<String>, usize)> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut modules = BTreeSet::new();
    for f in &files {
        if let Some(m) = module_of(f) {
            modules.insert(m);
        }
    }
    let mut graph = BTreeMap::new();
    for f in &files {
        let Some(me) = module_of(f) else { continue };
        let text = std::fs::read_to_string(f).unwrap();
        let lines = text.lines().count();
        let code = code_outside_tests(&text);
        let mut deps = BTreeSet::new();
        // `crate::a::b` names the longest module path that exists; `use
        // crate::{a, b::c}` names each of its items.
        let mut names: Vec<String> = Vec::new();
        for (at, _) in code.match_indices("crate::") {
            let tail = &code[at + "crate::".len()..];
            if let Some(group) = tail.strip_prefix('{') {
                let close = group.find('}').unwrap_or(group.len());
                for item in group[..close].split(',') {
                    names.push(item.trim().to_string());
                }
            } else {
                let end = tail
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .unwrap_or(tail.len());
                names.push(tail[..end].to_string());
            }
        }
        for name in names {
            let parts: Vec<&str> = name.split("::").filter(|p| !p.is_empty()).collect();
            for n in (1..=parts.len()).rev() {
                let candidate = parts[..n].join("::");
                if modules.contains(&candidate) {
                    if candidate != me {
                        deps.insert(candidate);
                    }
                    break;
                }
            }
        }
        // `super::x` inside a child module.
        if let Some((parent, _)) = me.rsplit_once("::") {
            for (at, _) in code.match_indices("super::") {
                let tail = &code[at + "super::".len()..];
                let end = tail
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                let candidate = format!("{parent}::{}", &tail[..end]);
                if modules.contains(&candidate) && candidate != me {
                    deps.insert(candidate);
                } else {
                    deps.insert(parent.to_string());
                }
            }
        }
        deps.remove(&me);
        graph.insert(me, (deps, lines));
    }
    graph
}

fn layer(module: &str) -> u8 {
    let mut best: Option<(usize, u8)> = None;
    for (name, l) in LAYERS {
        if (module == *name || module.starts_with(&format!("{name}::")))
            && best.map_or(true, |(len, _)| name.len() > len)
        {
            best = Some((name.len(), *l));
        }
    }
    best.map(|(_, l)| l)
        .unwrap_or_else(|| panic!("module {module} has no layer in LAYERS"))
}

/// Every cycle's modules, found by a depth-first search.
fn cycles(graph: &BTreeMap<String, (BTreeSet<String>, usize)>) -> Vec<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, (BTreeSet<String>, usize)>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        found: &mut Vec<Vec<String>>,
    ) {
        if let Some(pos) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[pos..].to_vec();
            cycle.push(node.to_string());
            found.push(cycle);
            return;
        }
        if done.contains(node) {
            return;
        }
        stack.push(node.to_string());
        if let Some((deps, _)) = graph.get(node) {
            for d in deps {
                visit(d, graph, stack, done, found);
            }
        }
        stack.pop();
        done.insert(node.to_string());
    }
    let mut found = Vec::new();
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, graph, &mut Vec::new(), &mut done, &mut found);
    }
    found
}

#[test]
fn module_graph_has_no_cycles_and_keeps_its_layers() {
    let graph = graph();
    for (module, (deps, lines)) in &graph {
        let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
        println!("{module:16} {lines:5}  -> {}", deps.join(", "));
    }
    let cycles = cycles(&graph);
    let mut upward = Vec::new();
    for (module, (deps, _)) in &graph {
        for d in deps {
            // A parent module declaring its children is not a dependency.
            if d.starts_with(&format!("{module}::")) {
                continue;
            }
            if layer(d) > layer(module) {
                upward.push(format!("{module} -> {d}"));
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles: {cycles:?}");
    assert!(
        upward.is_empty(),
        "lower layers import from higher ones: {upward:?}"
    );
}

#[test]
fn the_module_text_filter_drops_test_blocks_and_comments() {
    let text = "use crate::a::X; // crate::b\n#[cfg(test)]\nmod tests {\n use crate::c;\n fn f() { {} }\n}\nuse crate::d;\n";
    let code = code_outside_tests(text);
    assert!(code.contains("crate::a") && code.contains("crate::d"));
    assert!(!code.contains("crate::b") && !code.contains("crate::c"));
}
