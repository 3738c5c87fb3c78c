//! The shape of the code, kept true as it grows: every module imports only
//! its own layer or the ones below it, clap lives in the command-line layer
//! only, and only the command line rejects a flag by name (hints may still
//! say which flag helps).

use std::path::{Path, PathBuf};

/// The layers, bottom up. A module may import its own layer and those below.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "foundation",
        &[
            "error", "output", "policy", "stream", "stats", "target", "jsonfile", "tokens",
        ],
    ),
    ("scenario", &["scenario"]),
    ("engine", &["engine", "mock"]),
    ("result", &["result"]),
    ("gate", &["gate"]),
    ("render and github", &["render", "github"]),
    ("commands", &["commands"]),
    ("command line", &["cli", "config", "lib", "main"]),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, mods)| mods.contains(&module))
}

/// The top-level module a source file belongs to (`src/engine/vu.rs` → `engine`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("a component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string()
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Code lines, comments dropped.
fn code(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter(|(_, l)| {
        let t = l.trim_start();
        !(t.starts_with("//") || t.starts_with("///") || t.starts_with("//!"))
    })
}

/// Every top-level module a line names through `crate::` (or, in the
/// binary, `flora_gate::`), including `use crate::{a, b}` groups.
fn imported(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    for prefix in ["crate::", "flora_gate::"] {
        let mut rest = line;
        while let Some(i) = rest.find(prefix) {
            let after = &rest[i + prefix.len()..];
            if let Some(group) = after.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        found.push(name);
                    }
                }
            } else {
                let name: String = after
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
            rest = after;
        }
    }
    found
}

fn all_sources() -> (PathBuf, Vec<PathBuf>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    (src, files)
}

#[test]
fn every_module_has_a_layer() {
    let (src, files) = all_sources();
    for f in &files {
        let m = module_of(&src, f);
        assert!(
            layer_of(&m).is_some(),
            "{} is in no layer: add `{m}` to LAYERS in tests/architecture.rs",
            f.display()
        );
    }
}

#[test]
fn imports_point_down() {
    let (src, files) = all_sources();
    let mut wrong = Vec::new();
    for f in &files {
        let m = module_of(&src, f);
        let Some(own) = layer_of(&m) else { continue };
        let text = std::fs::read_to_string(f).expect("read");
        for (n, line) in code(&text) {
            for name in imported(line) {
                // Items defined in lib.rs itself (`crate::UserError`) are
                // re-exports of lower layers; only modules are layered.
                let Some(theirs) = layer_of(&name) else {
                    continue;
                };
                if theirs > own {
                    wrong.push(format!(
                        "{}:{}: {} ({}) imports {name} ({})",
                        f.display(),
                        n + 1,
                        m,
                        LAYERS[own].0,
                        LAYERS[theirs].0
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that point up:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn clap_lives_in_the_command_line_layer_only() {
    let (src, files) = all_sources();
    let mut wrong = Vec::new();
    for f in &files {
        let m = module_of(&src, f);
        if m == "cli" || m == "main" {
            continue;
        }
        let text = std::fs::read_to_string(f).expect("read");
        for (n, line) in code(&text) {
            if line.contains("clap::") || line.contains("use clap") {
                wrong.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "clap outside cli.rs:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn only_the_command_line_rejects_a_flag_by_name() {
    let (src, files) = all_sources();
    let commands = layer_of("cli").expect("layer");
    let mut wrong = Vec::new();
    for f in &files {
        let m = module_of(&src, f);
        if layer_of(&m).is_some_and(|l| l >= commands) {
            continue;
        }
        let text = std::fs::read_to_string(f).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in code(&text) {
            // `UserError::flag("--x", …)`, possibly with the name on the next line.
            if let Some(i) = line.find("UserError::flag(") {
                let tail = format!("{}{}", &line[i..], lines.get(n + 1).unwrap_or(&""));
                if tail.contains("\"--") {
                    wrong.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "flag errors below the command line:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_checker_sees_what_it_must() {
    assert_eq!(
        imported("use crate::{engine, gate::Verdict};"),
        ["engine", "gate"]
    );
    assert_eq!(
        imported("let x = crate::result::build(crate::scenario::X);"),
        ["result", "scenario"]
    );
    assert!(layer_of("gate") > layer_of("result"));
}
