//! The docs agree with the code where the code can say: the crate graph drawn in
//! docs/ARCHITECTURE.md is the workspace's own dependency graph, as `cargo
//! metadata` reports it (normal dependencies between workspace members; the
//! test-only crates `testkit` and `e2e` are left out of the drawing); the
//! configuration reference is generated from the settings code
//! ([`configuration`]).

mod configuration;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::Command,
};

type Graph = BTreeMap<String, BTreeSet<String>>;

const TEST_ONLY: [&str; 2] = ["testkit", "e2e"];

#[test]
fn the_crate_graph_in_architecture_md_is_the_workspace_graph() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace");
    let doc = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).expect("docs/ARCHITECTURE.md");
    let (members, actual) = workspace_graph(root);
    let drawn = drawn_graph(&doc, &members);
    let missing: Vec<String> = edges(&actual).difference(&edges(&drawn)).cloned().collect();
    let extra: Vec<String> = edges(&drawn).difference(&edges(&actual)).cloned().collect();
    let undrawn: Vec<&String> = actual.keys().filter(|crate_| !drawn.contains_key(*crate_)).collect();
    assert!(
        missing.is_empty() && extra.is_empty() && undrawn.is_empty(),
        "docs/ARCHITECTURE.md's crate graph is out of date:\n  missing edges: {missing:?}\n  edges no Cargo.toml has: {extra:?}\n  crates not drawn: {undrawn:?}"
    );
}

/// Every member's normal dependencies on other members, and how a drawing may
/// name each member (package name, folder, or the folder's last part).
fn workspace_graph(root: &Path) -> (BTreeMap<String, String>, Graph) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(root)
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let names: BTreeSet<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut aliases = BTreeMap::new();
    let mut graph = Graph::new();
    for package in packages {
        let name = package["name"].as_str().expect("a package has a name");
        if TEST_ONLY.contains(&name) {
            continue;
        }
        let manifest = Path::new(package["manifest_path"].as_str().expect("manifest path"));
        let folder = manifest.parent().expect("a manifest is in a folder");
        let relative = folder.strip_prefix(root).expect("members are under the root");
        aliases.insert(name.to_owned(), name.to_owned());
        aliases.insert(relative.display().to_string(), name.to_owned());
        aliases.insert(folder.file_name().expect("a folder name").to_string_lossy().into_owned(), name.to_owned());
        let deps = package["dependencies"].as_array().expect("dependencies");
        let on_members = deps
            .iter()
            .filter(|d| d["kind"].is_null())
            .filter_map(|d| d["name"].as_str())
            .filter(|d| names.contains(d) && !TEST_ONLY.contains(d))
            .map(str::to_owned)
            .collect();
        graph.insert(name.to_owned(), on_members);
    }
    (aliases, graph)
}

/// The graph of the first ```mermaid block: lines `A[label] --> b & c`, where a
/// node is named by its `[label]` when it has one.
fn drawn_graph(doc: &str, members: &BTreeMap<String, String>) -> Graph {
    let block = doc.split("```mermaid").nth(1).and_then(|rest| rest.split("```").next()).expect("a mermaid block");
    let mut ids = BTreeMap::new();
    let mut graph = Graph::new();
    let mut resolve = |node: &str| -> String {
        let node = node.trim();
        let (id, label) = match node.split_once('[') {
            Some((id, label)) => (id, Some(label.trim_end_matches(']'))),
            None => (node, None),
        };
        if let Some(label) = label {
            ids.insert(id.to_owned(), label.to_owned());
        }
        let label = ids.get(id).cloned().unwrap_or_else(|| id.to_owned());
        members.get(&label).cloned().unwrap_or_else(|| panic!("the drawing names `{label}`, which is no crate"))
    };
    for line in block.lines().map(str::trim).filter(|l| l.contains("-->")) {
        let (from, to) = line.split_once("-->").expect("an edge");
        let from = resolve(from);
        let targets: BTreeSet<String> = to.split('&').map(&mut resolve).collect();
        for target in &targets {
            graph.entry(target.clone()).or_default();
        }
        graph.entry(from).or_default().extend(targets);
    }
    for line in block.lines().map(str::trim).filter(|l| !l.is_empty() && !l.contains("-->") && *l != "flowchart TD") {
        let node = resolve(line);
        graph.entry(node).or_default();
    }
    graph
}

fn edges(graph: &Graph) -> BTreeSet<String> {
    graph.iter().flat_map(|(from, to)| to.iter().map(move |t| format!("{from} -> {t}"))).collect()
}
