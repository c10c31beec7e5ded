//! The layout rules of chat-node, checked over its `use` graph: each
//! top-level module (a file, or a folder with its files) is one part; the
//! parts import each other without a circle; only the node's own wiring
//! (`node.rs`, `node/`) reaches the node type; the client imports nothing
//! from the host side.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let entries = std::fs::read_dir(dir).expect("read the source folder");
    for entry in entries {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            found.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found
}

/// The code of a file without its comments (line comments only: the crate
/// has no block comments).
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read a source file");
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The part a file belongs to: its first path component under `src/`.
fn part_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("a component");
    let first = first.as_os_str().to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The parts `code` names as `crate::PART` (also inside `use crate::{..}`).
fn named_parts(code: &str, parts: &BTreeSet<String>) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let rest = rest.trim_start_matches('{');
        let group = rest
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ',' || c == ' '))
            .next()
            .unwrap_or_default();
        for name in group.split(',').map(str::trim) {
            if parts.contains(name) {
                named.insert(name.to_string());
            }
        }
    }
    named
}

struct Layout {
    /// Part -> the parts it imports.
    imports: BTreeMap<String, BTreeSet<String>>,
    /// File (relative to `src/`) -> its code.
    files: Vec<(String, String, String)>,
}

fn layout() -> Layout {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files: Vec<PathBuf> = sources(&src)
        .into_iter()
        .filter(|f| {
            !matches!(
                f.file_name().and_then(|n| n.to_str()),
                Some("lib.rs" | "main.rs")
            ) || f.parent() != Some(src.as_path())
        })
        .collect();
    let parts: BTreeSet<String> = files.iter().map(|f| part_of(&src, f)).collect();
    let mut imports: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut read = Vec::new();
    for file in &files {
        let part = part_of(&src, file);
        let code = code_of(file);
        let named = named_parts(&code, &parts);
        let entry = imports.entry(part.clone()).or_default();
        entry.extend(named.into_iter().filter(|n| *n != part));
        let rel = file.strip_prefix(&src).expect("under src");
        read.push((rel.to_string_lossy().to_string(), part, code));
    }
    Layout {
        imports,
        files: read,
    }
}

/// A circle through `imports`, if there is one.
fn circle(imports: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        part: &str,
        imports: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == part) {
            let mut found = path[at..].to_vec();
            found.push(part.to_string());
            return Some(found);
        }
        if done.contains(part) {
            return None;
        }
        path.push(part.to_string());
        for next in imports.get(part).into_iter().flatten() {
            if let Some(found) = visit(next, imports, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(part.to_string());
        None
    }
    let mut done = BTreeSet::new();
    imports
        .keys()
        .find_map(|part| visit(part, imports, &mut Vec::new(), &mut done))
}

#[test]
fn the_parts_import_each_other_without_a_circle() {
    let layout = layout();
    assert!(
        layout.imports.contains_key("host") && layout.imports.contains_key("client"),
        "the parser found the parts: {:?}",
        layout.imports.keys()
    );
    if let Some(found) = circle(&layout.imports) {
        panic!(
            "an import circle: {} (imports: {:#?})",
            found.join(" -> "),
            layout.imports
        );
    }
}

#[test]
fn only_the_nodes_wiring_reaches_the_node_type() {
    let layout = layout();
    let reaching: Vec<&str> = layout
        .files
        .iter()
        .filter(|(_, part, code)| part != "node" && code.contains("NodeShared"))
        .map(|(file, _, _)| file.as_str())
        .collect();
    assert!(
        reaching.is_empty(),
        "files that reach the node type: {reaching:?}"
    );
}

#[test]
fn the_client_imports_nothing_from_the_host_side() {
    let layout = layout();
    let client = &layout.imports["client"];
    assert!(!client.contains("host"), "client imports: {client:?}");
}

#[test]
fn a_circle_is_found_when_there_is_one() {
    let mut imports: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    imports.entry("a".into()).or_default().insert("b".into());
    imports.entry("b".into()).or_default().insert("c".into());
    assert_eq!(circle(&imports), None);
    imports.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        circle(&imports),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    let parts: BTreeSet<String> = ["host", "error", "client"].map(String::from).into();
    let named = named_parts(
        "use crate::{error, host::RoomHost};\nx(crate::client::f)",
        &parts,
    );
    assert_eq!(named, parts);
}
