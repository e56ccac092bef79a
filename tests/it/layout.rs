//! The source's shape: no import cycle between the modules of any folder of `src/` (the top level
//! included), and the command line module holds only the command line. A cycle means two modules can no longer be read (or
//! changed) one without the other; the layout in `src/lib.rs` relies on there being none.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every path `text` names from `crate::`, `self::` or `super::` (chains of `super::`
/// included), braces expanded: `crate::{a, b::{c, D}}` gives `[crate, a]`, `[crate, b, c]` and
/// `[crate, b, D]`.
fn paths(text: &str) -> Vec<Vec<String>> {
    fn ident(rest: &str) -> (&str, &str) {
        let rest = rest.trim_start();
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        rest.split_at(end)
    }
    /// Parses one path (or brace group) at `rest` after `prefix`, pushing every leaf; returns
    /// what follows it.
    fn parse<'t>(rest: &'t str, prefix: &[String], out: &mut Vec<Vec<String>>) -> &'t str {
        let rest = rest.trim_start();
        if let Some(mut group) = rest.strip_prefix('{') {
            loop {
                group = parse(group, prefix, out).trim_start();
                match group.chars().next() {
                    Some(',') => group = &group[1..],
                    Some('}') => return &group[1..],
                    _ => return group,
                }
            }
        }
        let (name, after) = ident(rest);
        let mut path = prefix.to_vec();
        if name.is_empty() {
            out.push(path);
            return after;
        }
        path.push(name.to_owned());
        match after.strip_prefix("::") {
            Some(next) => parse(next, &path, out),
            None => {
                out.push(path);
                after
            }
        }
    }
    let mut found = Vec::new();
    for start in ["crate::", "self::", "super::"] {
        for (at, _) in text.match_indices(start) {
            let before = text[..at].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            parse(&text[at..], &[], &mut found);
        }
    }
    found
}

/// The module a file under `src/` is: `store/etcd/mod.rs` is `[store, etcd]`.
fn module_of(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| {
            c.as_os_str()
                .to_str()
                .unwrap()
                .trim_end_matches(".rs")
                .to_owned()
        })
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// `path` as the absolute module path it names when read in module `module`.
fn resolve(module: &[String], path: &[String]) -> Option<Vec<String>> {
    let (first, mut rest) = path.split_first()?;
    let mut base = match first.as_str() {
        "crate" => return Some(rest.to_vec()),
        "self" => module.to_vec(),
        "super" => module[..module.len().checked_sub(1)?].to_vec(),
        _ => return None,
    };
    while let Some((head, tail)) = rest.split_first() {
        if head != "super" {
            break;
        }
        base.pop()?;
        rest = tail;
    }
    base.extend_from_slice(rest);
    Some(base)
}

/// For every folder (the crate root as `""`), its modules and which of them each one refers to:
/// `store` → {`backend` → {`writer`}, …}. A reference counts where the two module paths part: a
/// file of `store/etcd` naming `crate::store::worker::Worker` is `etcd` → `worker` in `store`. A
/// folder's `mod.rs` (its own root) is none of its modules: children naturally use what their
/// parent declares.
fn module_graphs() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let modules: BTreeSet<Vec<String>> = files
        .iter()
        .map(|f| module_of(f.strip_prefix(&src).unwrap()))
        .collect();
    let mut graphs: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in &files {
        let module = module_of(file.strip_prefix(&src).unwrap());
        if matches!(module.as_slice(), [m] if m == "lib" || m == "main") {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for path in paths(&text) {
            let Some(target) = resolve(&module, &path) else {
                continue;
            };
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            let (Some(from), Some(to)) = (module.get(common), target.get(common)) else {
                continue;
            };
            let mut sibling = module[..common].to_vec();
            sibling.push(to.clone());
            if !modules.contains(&sibling) {
                continue; // an item of the parent, not a module
            }
            graphs
                .entry(module[..common].join("/"))
                .or_default()
                .entry(from.clone())
                .or_default()
                .insert(to.clone());
        }
    }
    graphs
}

/// Top-level module -> the top-level modules its files refer to.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    module_graphs().remove("").unwrap_or_default()
}

/// A cycle through the graph, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_reference_reader_sees_every_form_of_import() {
    let text = "use crate::a::B;\nuse crate::{c, d::{E, F}, g::h};\nlet x = crate::i::j();\n\
                use super::super::k::L; use self::m; my_crate::n::o;";
    let found: Vec<String> = paths(text).iter().map(|p| p.join("::")).collect();
    assert_eq!(
        found,
        [
            "crate::a::B",
            "crate::c",
            "crate::d::E",
            "crate::d::F",
            "crate::g::h",
            "crate::i::j",
            "self::m",
            "super::super::k::L",
        ]
    );
    let module = ["store", "etcd", "keys"].map(String::from);
    let up = ["super", "super", "backend", "Worker"].map(String::from);
    assert_eq!(
        resolve(&module, &up).unwrap(),
        ["store", "backend", "Worker"]
    );
    let cyclic = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    assert_eq!(find_cycle(&cyclic).unwrap(), ["a", "b", "a"]);
}

#[test]
fn no_two_modules_depend_on_each_other_at_any_depth() {
    let graphs = module_graphs();
    let top = &graphs[""];
    assert!(
        top.contains_key("app") && top.contains_key("auth"),
        "{top:?}"
    );
    assert!(
        graphs.contains_key("store") && graphs.contains_key("proxy"),
        "{graphs:?}"
    );
    for (folder, graph) in &graphs {
        if let Some(cycle) = find_cycle(graph) {
            let folder = if folder.is_empty() { "src" } else { folder };
            panic!("import cycle in {folder}/: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_command_line_only_parses_and_delegates() {
    let graph = module_graph();
    let cli = &graph["cli"];
    for serving in ["listen", "service", "proxy", "state", "tls"] {
        assert!(
            !cli.contains(serving),
            "cli reaches into `{serving}`: start gateways through `app`"
        );
    }
}
