//! Architecture guard (issue 11: layering rules): reads the source tree under `CARGO_MANIFEST_DIR` and fails
//! when it breaks one of the rules the project keeps by hand and reviews keep missing.
//!
//! ```text
//! src/**/*.rs ──▶ line counts ──────────────────────────────▶ (a) none over SOURCE_LINES_MAX
//! src/**, docs/**, README.md ──▶ lines citing the brief ────▶ (b) no `../shared`, `shared/DESIGN.md`, and in
//!                                                                  src/ no `DESIGN.md` without `docs/` before it
//! src/<module>/** ──▶ comments stripped ──▶ `crate::<other>` ──▶ module graph ──▶ (c) a DAG; nothing uses `cli`
//! ```
//!
//! (a) keeps files reviewable; (b) keeps citations inside the repository, since the founding brief outside it
//! is not shipped (`docs/DESIGN.md §2` is the form to use); (c) keeps the top-level modules layered, so that a
//! module can be read, tested and changed without the ones above it (`cli` is the top and may use everything).
//!
//! The scan is textual: a `crate::<module>` path in code (outside `//` comments, doc lines and string literals
//! on one line) is a dependency, `use crate::{a, b}` groups included. Block comments and multi-line string
//! literals are not parsed (the tree uses neither for paths). Each check prints every offender, not just the
//! first. The helpers are unit-tested below on hand-made inputs, so the checks pass on a tree without offenders.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// No source file may exceed this many lines (issue 11).
const SOURCE_LINES_MAX: usize = 700;

/// The top-level module every other one may use and none may depend on.
const TOP_MODULE: &str = "cli";

/// Module graph: module → module it uses → where (`path:line`, first occurrences).
type Graph = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir`, recursively, sorted (deterministic output).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// `path` relative to the crate root, with `/` separators (for messages).
fn rel(path: &Path) -> String {
    path.strip_prefix(root()).unwrap_or(path).to_string_lossy().replace('\\', "/")
}

fn is_rs(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "rs")
}

// ---- (a) file length ------------------------------------------------------------------------------------

/// `(path, lines)` of every text over `max_lines` lines.
fn oversized<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>, max_lines: usize) -> Vec<(String, usize)> {
    files
        .into_iter()
        .map(|(path, text)| (path.to_string(), text.lines().count()))
        .filter(|&(_, n)| n > max_lines)
        .collect()
}

// ---- (b) citations of the founding brief ----------------------------------------------------------------

/// Why `line` cites the founding brief outside the repository, if it does. The brief is named `DESIGN.md`;
/// what the code needs of it is written, in the repository's own words, in docs/FOUNDATIONS.md, so the name
/// must not appear at all (issue 11: `git grep DESIGN.md -- src docs README.md` finds nothing).
fn brief_citation(line: &str) -> Option<&'static str> {
    if line.contains("../shared") {
        return Some("cites `../shared` (outside the repository)");
    }
    if line.contains("DESIGN.md") {
        return Some("cites `DESIGN.md`, the brief outside the repository (cite docs/FOUNDATIONS.md)");
    }
    None
}

/// `path:line: why: text` for every citing line of `text`.
fn brief_citations(path: &str, text: &str) -> Vec<String> {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| brief_citation(line).map(|why| format!("{path}:{}: {why}: {}", i + 1, line.trim())))
        .collect()
}

// ---- (c) module layering --------------------------------------------------------------------------------

/// `line` without its `//` comment (doc lines become empty); `//` inside a string literal is kept.
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1, // skip the escaped byte
            b'"' => in_string = !in_string,
            b'\'' if !in_string && bytes.get(i + 2) == Some(&b'\'') => i += 2, // a char literal such as '"'
            b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
        i += 1;
    }
    line
}

/// Identifier starting at `at` in `s`.
fn ident_at(s: &str, at: usize) -> &str {
    let len = s[at..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len() - at);
    &s[at..at + len]
}

/// Top-level modules named by the `crate::` paths of `code` (comments already stripped), with the byte offset
/// of each mention: `crate::log::x` names `log`; `crate::{log, proto::y}` names `log` and `proto`.
fn crate_paths(code: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (at, m) in code.match_indices("crate::") {
        if code[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            continue; // `mycrate::`, not `crate::`
        }
        let after = at + m.len();
        if !code[after..].starts_with('{') {
            out.push((ident_at(code, after).to_string(), at));
            continue;
        }
        // A group: the first identifier of every top-level item up to the matching brace.
        let mut depth = 0usize;
        let mut item_start = true;
        for (i, c) in code[after..].char_indices() {
            let pos = after + i;
            match c {
                '{' => {
                    depth += 1;
                    item_start = depth == 1;
                }
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                ',' if depth == 1 => item_start = true,
                c if item_start && (c.is_ascii_alphabetic() || c == '_') => {
                    out.push((ident_at(code, pos).to_string(), pos));
                    item_start = false;
                }
                _ => {}
            }
        }
    }
    out
}

/// The modules directly under `src/` (directories and files, without `lib.rs` and `main.rs`), sorted.
fn top_modules(src: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            if p.is_dir() {
                Some(p.file_name()?.to_str()?.to_string())
            } else if is_rs(&p) {
                Some(p.file_stem()?.to_str()?.to_string()).filter(|n| n != "lib" && n != "main")
            } else {
                None
            }
        })
        .collect();
    names.sort();
    names
}

/// The graph of `crate::<module>` uses between the top-level modules of `src/`.
fn module_graph(src: &Path) -> Graph {
    let modules = top_modules(src);
    let mut graph = Graph::new();
    for from in &modules {
        graph.entry(from.clone()).or_default();
        let dir = src.join(from);
        let files = if dir.is_dir() { files_under(&dir) } else { vec![src.join(format!("{from}.rs"))] };
        for file in files.iter().filter(|p| is_rs(p)) {
            let text = fs::read_to_string(file).unwrap();
            let code: String = text.lines().map(strip_comment).collect::<Vec<_>>().join("\n");
            for (to, at) in crate_paths(&code) {
                if &to == from || !modules.contains(&to) {
                    continue;
                }
                let line = code[..at].matches('\n').count() + 1;
                let evidence = graph.get_mut(from).unwrap().entry(to).or_default();
                if evidence.len() < 3 {
                    evidence.push(format!("{}:{line}", rel(file)));
                }
            }
        }
    }
    graph
}

/// One cycle per group of mutually dependent modules (strongly connected component), each as the path
/// `a -> b -> … -> a` starting at the group's smallest name; empty for a DAG.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let reaches = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_string()];
        while let Some(n) = stack.pop() {
            for next in graph.get(&n).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&String, BTreeSet<String>> = graph.keys().map(|n| (n, reaches(n))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for start in graph.keys() {
        if done.contains(start) || !reach[start].contains(start) {
            continue;
        }
        // The component of `start`: what it reaches and what reaches it back.
        let component: BTreeSet<&String> = reach[start]
            .iter()
            .filter_map(|n| reach.get_key_value(n))
            .filter(|(_, r)| r.contains(start))
            .map(|(n, _)| *n)
            .collect();
        done.extend(component.iter().map(|n| (*n).clone()));
        out.push(shortest_cycle(graph, start, &component));
    }
    out
}

/// The shortest path `start -> … -> start` inside `component` (breadth-first; `start` is on a cycle).
fn shortest_cycle(
    graph: &BTreeMap<String, BTreeSet<String>>,
    start: &str,
    component: &BTreeSet<&String>,
) -> Vec<String> {
    let mut parent: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.to_string()]);
    while let Some(n) = queue.pop_front() {
        for next in graph.get(&n).into_iter().flatten().filter(|m| component.contains(m)) {
            if next == start {
                let mut path = vec![start.to_string(), n.clone()];
                while let Some(p) = parent.get(path.last().unwrap()) {
                    path.push(p.clone());
                }
                if path.last().map(String::as_str) != Some(start) {
                    path.push(start.to_string());
                }
                path.reverse();
                return path;
            }
            if !parent.contains_key(next) {
                parent.insert(next.clone(), n.clone());
                queue.push_back(next.clone());
            }
        }
    }
    unreachable!("{start} is on a cycle of its component")
}

// ---- the checks -----------------------------------------------------------------------------------------

#[test]
fn no_source_file_exceeds_the_line_limit() {
    let files: Vec<(String, String)> = files_under(&root().join("src"))
        .into_iter()
        .filter(|p| is_rs(p))
        .map(|p| (rel(&p), fs::read_to_string(&p).unwrap()))
        .collect();
    let over = oversized(files.iter().map(|(p, t)| (p.as_str(), t.as_str())), SOURCE_LINES_MAX);
    for (path, lines) in &over {
        eprintln!("{path}: {lines} lines (max {SOURCE_LINES_MAX})");
    }
    assert!(over.is_empty(), "{} source files exceed {SOURCE_LINES_MAX} lines (listed above)", over.len());
}

#[test]
fn nothing_cites_the_founding_brief_outside_the_repository() {
    let mut found = Vec::new();
    let src = root().join("src");
    let mut files: Vec<PathBuf> = files_under(&src);
    files.extend(files_under(&root().join("docs")));
    files.push(root().join("README.md"));
    for path in files {
        let Ok(text) = fs::read_to_string(&path) else { continue }; // binary files cite nothing
        found.extend(brief_citations(&rel(&path), &text));
    }
    for line in &found {
        eprintln!("{line}");
    }
    assert!(found.is_empty(), "{} lines cite the founding brief outside the repository (listed above)", found.len());
}

#[test]
fn top_level_modules_form_a_dag_below_cli() {
    let graph = module_graph(&root().join("src"));
    let mut problems = Vec::new();
    for (from, uses) in &graph {
        if let Some(at) = uses.get(TOP_MODULE) {
            problems.push(format!("{from} uses {TOP_MODULE}, which nothing may use: {}", at.join(", ")));
        }
    }
    let edges: BTreeMap<String, BTreeSet<String>> =
        graph.iter().map(|(from, uses)| (from.clone(), uses.keys().cloned().collect())).collect();
    for cycle in cycles(&edges) {
        let mut msg = format!("cycle: {}", cycle.join(" -> "));
        for pair in cycle.windows(2) {
            msg.push_str(&format!("\n    {} -> {}: {}", pair[0], pair[1], graph[&pair[0]][&pair[1]].join(", ")));
        }
        problems.push(msg);
    }
    for p in &problems {
        eprintln!("{p}");
    }
    assert!(problems.is_empty(), "{} layering violations (listed above)", problems.len());
}

// ---- the helpers, on hand-made inputs -------------------------------------------------------------------

fn graph_of(edges: &[(&str, &str)]) -> BTreeMap<String, BTreeSet<String>> {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for &(a, b) in edges {
        g.entry(a.to_string()).or_default().insert(b.to_string());
        g.entry(b.to_string()).or_default();
    }
    g
}

#[test]
fn cycle_finder_accepts_a_dag_and_names_every_cycle() {
    let dag =
        graph_of(&[("cli", "server"), ("cli", "perf"), ("server", "engine"), ("perf", "engine"), ("engine", "proto")]);
    assert!(cycles(&dag).is_empty());
    let direct = graph_of(&[("cli", "perf"), ("perf", "driver"), ("driver", "perf"), ("driver", "log")]);
    assert_eq!(cycles(&direct), vec![vec!["driver", "perf", "driver"]]);
    // Through others, plus a separate second cycle: one path per component, the shortest from its first name.
    let through = graph_of(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("x", "y"), ("y", "x"), ("d", "x")]);
    assert_eq!(cycles(&through), vec![vec!["a", "b", "c", "a"], vec!["x", "y", "x"]]);
}

#[test]
fn comments_and_doc_lines_are_not_dependencies() {
    assert_eq!(strip_comment("//! see `crate::perf`"), "");
    assert_eq!(strip_comment("    /// crate::perf"), "    ");
    assert_eq!(strip_comment("use crate::log::X; // not crate::perf"), "use crate::log::X; ");
    assert_eq!(strip_comment(r#"let u = "http://x"; // crate::perf"#), r#"let u = "http://x"; "#);
    assert_eq!(strip_comment(r#"let q = '"'; // crate::perf"#), r#"let q = '"'; "#);
    let code = "use crate::log::state::LogState;\nuse crate::{proto, engine::x};\nfn f() { tessera_crate::z(); }";
    let names: Vec<String> = crate_paths(code).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec!["log", "proto", "engine"]);
}

#[test]
fn citation_and_length_rules_on_samples() {
    assert_eq!(brief_citation("//! (docs/FOUNDATIONS.md §2)"), None);
    assert!(brief_citation("//! (DESIGN.md §2)").is_some());
    assert!(brief_citation("//! docs/DESIGN.md §2").is_some());
    assert!(brief_citation("see `../shared/compat/x.md`").is_some());
    assert!(brief_citation("see shared/DESIGN.md").is_some());
    let long = "x\n".repeat(701);
    let over = oversized([("a.rs", "x\n"), ("b.rs", long.as_str())], 700);
    assert_eq!(over, vec![("b.rs".to_string(), 701)]);
}
