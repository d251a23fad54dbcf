//! The rules ARCHITECTURE.md states, checked against the tree: each crate
//! imports only the internal crates its row names (and its Cargo.toml says
//! the same), no module imports a module that imports it back, `main.rs`
//! only parses and dispatches, and key wrapping has one home.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The internal `opptak-*` crates a Cargo.toml lists under `[dependencies]`.
fn internal_deps(manifest: &str) -> BTreeSet<String> {
    let mut deps = BTreeSet::new();
    let mut in_deps = false;
    for line in manifest.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_deps = t == "[dependencies]";
        } else if in_deps && t.starts_with("opptak-") {
            let name = t.split(['.', ' ', '=']).next().unwrap_or_default();
            deps.insert(name.trim_start_matches("opptak-").to_owned());
        }
    }
    deps
}

/// The "may import" cell of each crate's row in ARCHITECTURE.md's crate table.
fn documented_imports() -> BTreeMap<String, BTreeSet<String>> {
    let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let mut out = BTreeMap::new();
    for line in doc.lines().filter(|l| l.starts_with("| `opptak-")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        let name = cells[0].trim_start_matches("| `opptak-").trim_end_matches('`');
        let imports: BTreeSet<String> = if cells[2].trim() == "nothing internal" {
            BTreeSet::new()
        } else {
            cells[2].split(',').map(|s| s.trim().to_owned()).collect()
        };
        out.insert(name.to_owned(), imports);
    }
    out
}

#[test]
fn every_crate_imports_only_what_architecture_md_says() {
    let documented = documented_imports();
    let mut seen = BTreeSet::new();
    for e in std::fs::read_dir(root().join("crates")).unwrap().flatten() {
        let manifest = e.path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let name = e.file_name().to_string_lossy().trim_start_matches("opptak-").to_owned();
        let want = documented
            .get(&name)
            .unwrap_or_else(|| panic!("ARCHITECTURE.md has no row for crates/opptak-{name}"));
        assert_eq!(
            &internal_deps(&text),
            want,
            "crates/opptak-{name}: its Cargo.toml and its ARCHITECTURE.md row disagree on what it imports"
        );
        seen.insert(name);
    }
    for name in documented.keys() {
        assert!(
            seen.contains(name),
            "ARCHITECTURE.md names opptak-{name}, which is not in crates/"
        );
    }
    assert!(seen.len() >= 13, "{seen:?}");
}

/// The top-level modules of a crate's `src/` and which others each names
/// through `crate::<module>`.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<String> = files
        .iter()
        .filter_map(|f| {
            let rel = f.strip_prefix(src).ok()?;
            let first = rel.components().next()?.as_os_str().to_string_lossy().into_owned();
            let m = first.trim_end_matches(".rs").to_owned();
            (m != "lib" && m != "main").then_some(m)
        })
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let rel = f.strip_prefix(src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .into_owned();
        let from = first.trim_end_matches(".rs").to_owned();
        if from == "lib" || from == "main" {
            continue;
        }
        // Code only: a doc link to another module is no import.
        let text: String = std::fs::read_to_string(f)
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for m in &modules {
            if m != &from && text.contains(&format!("crate::{m}::")) {
                graph.entry(from.clone()).or_default().insert(m.clone());
            }
        }
    }
    graph
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(n.to_owned());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_owned());
        for next in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let mut srcs = vec![root().join("src")];
    for e in std::fs::read_dir(root().join("crates")).unwrap().flatten() {
        srcs.push(e.path().join("src"));
    }
    for src in srcs.iter().filter(|s| s.is_dir()) {
        let graph = module_graph(src);
        assert!(
            find_cycle(&graph).is_none(),
            "{}: modules import each other: {:?}",
            src.display(),
            find_cycle(&graph)
        );
    }
    // The check sees a cycle when there is one.
    let mut g = BTreeMap::new();
    g.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    g.insert("b".to_owned(), BTreeSet::from(["c".to_owned()]));
    g.insert("c".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(find_cycle(&g).map(|c| c.len()), Some(4));
}

#[test]
fn main_only_parses_and_dispatches() {
    let main = std::fs::read_to_string(root().join("src/main.rs")).unwrap();
    assert!(
        main.lines().count() <= 200,
        "src/main.rs has {} lines",
        main.lines().count()
    );
}

#[test]
fn data_keys_are_wrapped_and_unwrapped_in_one_place() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    rust_files(&root().join("tests"), &mut files);
    rust_files(&root().join("benches"), &mut files);
    for e in std::fs::read_dir(root().join("crates")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !["opptak-vault", "opptak-crypto", "opptak-store"].contains(&name.as_str()) {
            rust_files(&e.path(), &mut files);
        }
    }
    let needle = ["WrappedKey", " {"].concat();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            !text.contains(&needle),
            "{} builds a WrappedKey itself; keys go through opptak-vault",
            f.display()
        );
    }
}

#[test]
fn the_map_is_short_and_its_error_and_row_rules_hold() {
    let map = std::fs::read(root().join("ARCHITECTURE.md")).unwrap();
    assert!(
        map.len() <= 15_000,
        "ARCHITECTURE.md is {} bytes; the map stays under 15 kB",
        map.len()
    );
    // Rows are mapped by #[derive(sqlx::FromRow)], not column by column.
    let mut files = Vec::new();
    rust_files(&root().join("crates/opptak-store/src"), &mut files);
    let needle = ["try_", "get("].concat();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(!text.contains(&needle), "{} maps rows by hand", f.display());
    }
    // anyhow only in the binary, tests and the two service crates.
    for e in std::fs::read_dir(root().join("crates")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if ["opptak-review", "opptak-compliance"].contains(&name.as_str()) {
            continue;
        }
        let manifest = std::fs::read_to_string(e.path().join("Cargo.toml")).unwrap();
        let normal = manifest.split("[dev-dependencies]").next().unwrap_or_default();
        assert!(
            !normal.lines().any(|l| l.trim_start().starts_with("anyhow")),
            "{name} depends on anyhow; library crates have a thiserror enum"
        );
    }
}

/// Every test file the requirement map names as proof exists (issue 16: the
/// map names, for R1–R13, the tests that prove each).
#[test]
fn the_requirement_map_names_tests_that_exist() {
    let map = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let section = map
        .split("## Where each requirement lives")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("the requirement map");
    let mut named = 0;
    for row in section.lines().filter(|l| l.starts_with("| R")) {
        let proof = row.trim_end_matches('|').rsplit('|').next().unwrap_or_default();
        for file in proof.split('`').skip(1).step_by(2) {
            // `x.rs`: tests/it/x.rs; `domain/x.rs`: crates/opptak-domain/tests/domain/x.rs.
            let path = match file.split_once('/') {
                Some((krate, _)) => root().join(format!("crates/opptak-{krate}/tests/{file}")),
                None => root().join("tests/it").join(file),
            };
            assert!(path.exists(), "{row}\nnames {file}, which is not {}", path.display());
            named += 1;
        }
    }
    assert!(named >= 13, "the map names {named} test files");
}
