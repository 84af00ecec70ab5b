//! The module layering of ARCHITECTURE.md, checked on the source: every top-level module of
//! the library imports only modules below it in `LAYERS`, so there is no import cycle and a
//! reader can learn the crate bottom-up. A new module must be placed in the list (the test
//! fails for a module it does not know).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Bottom first: a module may name (`crate::x`) only modules listed before it.
const LAYERS: &[&str] = &[
    "clock",
    "allocator",
    "blocking",
    "bencode",
    "error",
    "expiry_log",
    "message",
    "keys",
    "metrics",
    "config",
    "tls",
    "transport",
    "quic",
    "onion",
    "swarm",
    "sign",
    "store",
    "directory",
    "rpc",
    "peer",
    "reachability",
    "replication",
    "network",
    "notify",
    "status",
    "api",
    "node",
    "client",
    "testnet",
    "bench",
    "cli",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/rpc/store.rs` → `rpc`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// Every module named as `crate::name` in code (comments stripped), including the
/// `crate::{a, b::c}` form.
fn imported(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        out.insert(name);
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
    }
    out
}

#[test]
fn no_module_imports_one_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut violations = Vec::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let Some(mine) = rank(&module) else {
            violations.push(format!(
                "{}: module `{module}` is not in LAYERS",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read file");
        for dep in imported(&text) {
            if dep == module {
                continue;
            }
            match rank(&dep) {
                Some(theirs) if theirs < mine => {}
                Some(_) => violations.push(format!(
                    "{}: `{module}` imports `{dep}`, which is above it",
                    file.strip_prefix(&src).unwrap_or(file).display()
                )),
                None => violations.push(format!(
                    "{}: `{module}` imports unknown module `{dep}`",
                    file.strip_prefix(&src).unwrap_or(file).display()
                )),
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn every_listed_module_exists_and_lib_declares_exactly_these() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let declared: BTreeSet<&str> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .filter_map(|l| l.strip_suffix(';'))
        .collect();
    let listed: BTreeSet<&str> = LAYERS.iter().copied().collect();
    assert_eq!(declared, listed, "lib.rs modules vs LAYERS");
}

#[test]
fn the_import_scanner_sees_both_forms() {
    let found = imported(
        "use crate::rpc::Clock;\nuse crate::{api, status::x};\n// crate::node in a comment\n",
    );
    let want: BTreeSet<String> = ["api", "rpc", "status"].map(String::from).into();
    assert_eq!(found, want);
}

#[test]
fn architecture_code_map_lists_exactly_the_source_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let on_disk: BTreeSet<String> = files
        .iter()
        .filter_map(|f| f.strip_prefix(root).ok())
        .map(|f| f.display().to_string())
        .filter(|f| {
            !(f.ends_with("/tests.rs") || f.contains("/tests/") || f.ends_with("test_util.rs"))
        })
        .collect();
    // Rows of the file table: "| `src/…rs` | … |".
    let listed: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `src/"))
        .filter_map(|l| l.split('`').next())
        .map(|f| format!("src/{f}"))
        .collect();
    let missing: Vec<_> = on_disk.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&on_disk).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "ARCHITECTURE.md's file table: missing {missing:?}, no longer in src/ {stale:?}"
    );
}
