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

/// The text with comments and the insides of string and char literals
/// blanked (newlines kept, so positions keep their line numbers).
fn code_only(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !ident_char(b.get(i.wrapping_sub(1)).copied())
        {
            // A raw string: r"…" or r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            out.extend(std::iter::repeat_n(' ', j + 1 - i));
            i = j + 1;
            while i < b.len() {
                if b[i] == '"' && (0..hashes).all(|k| b.get(i + 1 + k) == Some(&'#')) {
                    out.extend(std::iter::repeat_n(' ', 1 + hashes));
                    i += 1 + hashes;
                    break;
                }
                out.push(blank(b[i]));
                i += 1;
            }
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < b.len() && b[i] != '"' {
                let skip = if b[i] == '\\' { 2 } else { 1 };
                for k in 0..skip {
                    if let Some(&x) = b.get(i + k) {
                        out.push(blank(x));
                    }
                }
                i += skip;
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && (b.get(i + 2) == Some(&'\'') || next == Some('\\')) {
            // A char literal ('x' or an escape), not a lifetime.
            out.push(' ');
            i += 1;
            while i < b.len() && b[i] != '\'' {
                let skip = if b[i] == '\\' { 2 } else { 1 };
                out.extend(std::iter::repeat_n(' ', skip));
                i += skip;
            }
            out.push(' ');
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_char(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// Every top-level module the code names through `crate::` (or, in the
/// binary, `flora_gate::`), with its line: paths in code, `use` paths and
/// `use` trees however they are laid out (`use crate::{\n  a::b,\n  c,\n}`).
fn imported(text: &str) -> Vec<(usize, String)> {
    let code = code_only(text);
    let b: Vec<char> = code.chars().collect();
    let line_at = |pos: usize| b[..pos].iter().filter(|c| **c == '\n').count() + 1;
    let skip_ws = |mut i: usize| {
        while b.get(i).is_some_and(|c| c.is_whitespace()) {
            i += 1;
        }
        i
    };
    let ident = |i: usize| -> (String, usize) {
        let mut j = i;
        while ident_char(b.get(j).copied()) {
            j += 1;
        }
        (b[i..j].iter().collect(), j)
    };
    let mut found = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if ident_char(b.get(i.wrapping_sub(1)).copied()) || !ident_char(Some(b[i])) {
            i += 1;
            continue;
        }
        let (word, end) = ident(i);
        let after = skip_ws(end);
        let is_root = (word == "crate" || word == "flora_gate")
            && b.get(after) == Some(&':')
            && b.get(after + 1) == Some(&':');
        if !is_root {
            i = end;
            continue;
        }
        let at = skip_ws(after + 2);
        if b.get(at) == Some(&'{') {
            // A group: the first name of each item at the group's own depth.
            let mut depth = 0;
            let mut j = at;
            let mut expect_item = true;
            while j < b.len() {
                match b[j] {
                    '{' => {
                        depth += 1;
                        if depth == 1 {
                            expect_item = true;
                        }
                        j += 1;
                    }
                    '}' => {
                        depth -= 1;
                        j += 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => {
                        expect_item = true;
                        j += 1;
                    }
                    c if depth == 1 && expect_item && ident_char(Some(c)) => {
                        let (name, e) = ident(j);
                        found.push((line_at(j), name));
                        expect_item = false;
                        j = e;
                    }
                    _ => j += 1,
                }
            }
            i = j;
        } else {
            let (name, e) = ident(at);
            if !name.is_empty() {
                found.push((line_at(at), name));
            }
            i = e.max(at + 1);
        }
    }
    found
}

/// Code lines, comments dropped.
fn code(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter(|(_, l)| {
        let t = l.trim_start();
        !(t.starts_with("//") || t.starts_with("///") || t.starts_with("//!"))
    })
}

/// Imports that point up from the file of module `module`: `path:line:
/// what` for each.
fn upward(path: &str, module: &str, text: &str) -> Vec<String> {
    let Some(own) = layer_of(module) else {
        return Vec::new();
    };
    imported(text)
        .into_iter()
        .filter_map(|(line, name)| {
            // Items defined in lib.rs itself (`crate::UserError`) are
            // re-exports of lower layers; only modules are layered.
            let theirs = layer_of(&name)?;
            (theirs > own).then(|| {
                format!(
                    "{path}:{line}: {module} ({}) imports {name} ({})",
                    LAYERS[own].0, LAYERS[theirs].0
                )
            })
        })
        .collect()
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
        let text = std::fs::read_to_string(f).expect("read");
        wrong.extend(upward(&f.display().to_string(), &module_of(&src, f), &text));
    }
    assert!(
        wrong.is_empty(),
        "imports that point up:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_import_check_catches_upward_imports_however_they_are_written() {
    let planted = [
        "use crate::commands::run;",
        "use crate::{\n    stats::Hist,\n    commands::run,\n};",
        "use crate::{stats, render::{html, text}};",
        "use crate ::{\n  // a comment\n  policy,\n  github\n    ::api,\n};",
        "fn f() { crate::commands::run(); }",
        "fn f() { let _ = crate::\n    cli::parse; }",
    ];
    for text in planted {
        let found = upward("src/gate/x.rs", "gate", text);
        assert_eq!(found.len(), 1, "{text:?}: {found:?}");
    }
    // Downward, commented out or inside a string: nothing.
    let fine = [
        "use crate::{\n    stats::Hist,\n    result::{RunResult, build},\n};",
        "// use crate::commands::run;",
        "/* crate::commands::run */ use crate::stats;",
        "const S: &str = \"crate::commands::run\";",
        "const R: &str = r#\"use crate::{commands};\"#;",
        "fn f<'a>(x: &'a str) -> char { let _ = '{'; crate::stats::f(x) }",
    ];
    for text in fine {
        let found = upward("src/gate/x.rs", "gate", text);
        assert!(found.is_empty(), "{text:?}: {found:?}");
    }
    let multi = upward(
        "src/gate/x.rs",
        "gate",
        "use std::fmt;\n\nuse crate::{\n    stats,\n    commands::run,\n};\n",
    );
    assert_eq!(
        multi,
        vec!["src/gate/x.rs:5: gate (gate) imports commands (commands)".to_string()]
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
    let names = |t: &str| -> Vec<String> { imported(t).into_iter().map(|(_, n)| n).collect() };
    assert_eq!(
        names("use crate::{engine, gate::Verdict};"),
        ["engine", "gate"]
    );
    assert_eq!(
        names("let x = crate::result::build(crate::scenario::X);"),
        ["result", "scenario"]
    );
    assert!(layer_of("gate") > layer_of("result"));
}

/// The longest a function grows without saying why.
const LONGEST_UNEXPLAINED: usize = 100;

/// Functions longer than `limit` lines without a `Long by design` comment
/// among the lines just above them: `path:line name (n lines)`.
fn long_functions(path: &str, text: &str, limit: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let head = trimmed
            .trim_start_matches("pub ")
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub(super) ")
            .trim_start_matches("const ")
            .trim_start_matches("async ");
        let Some(rest) = head.strip_prefix("fn ") else {
            continue;
        };
        if line.trim_end().ends_with(';') {
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let close = format!("{indent}}}");
        let Some(end) = lines[i + 1..].iter().position(|l| *l == close) else {
            continue;
        };
        let length = end + 2;
        if length <= limit {
            continue;
        }
        // The comment sits among the doc, attribute and comment lines above.
        let explained = lines[..i]
            .iter()
            .rev()
            .take_while(|l| {
                let t = l.trim_start();
                t.starts_with("//") || t.starts_with("#[")
            })
            .any(|l| l.contains("Long by design"));
        if !explained {
            found.push(format!("{path}:{} {name} ({length} lines)", i + 1));
        }
    }
    found
}

#[test]
fn long_functions_say_why() {
    let (src, files) = all_sources();
    let mut long = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read source");
        let path = f
            .strip_prefix(&src)
            .expect("under src")
            .display()
            .to_string();
        long.extend(long_functions(&path, &text, LONGEST_UNEXPLAINED));
    }
    assert!(
        long.is_empty(),
        "split these, or say beside each why it is long (`// Long by design: …`):\n{}",
        long.join("\n")
    );
}

#[test]
fn the_length_check_counts_and_reads_the_reason() {
    let body = "    x();\n".repeat(5);
    let plain = format!("/// Doc.\nfn long() {{\n{body}}}\n\nfn short() {{\n}}\n");
    assert_eq!(long_functions("a.rs", &plain, 6), ["a.rs:2 long (7 lines)"]);
    assert!(long_functions("a.rs", &plain, 7).is_empty());
    let nested = format!("impl X {{\n    pub async fn m(&self) {{\n    {body}    }}\n}}\n");
    assert_eq!(long_functions("b.rs", &nested, 6), ["b.rs:2 m (7 lines)"]);
    let why = format!("// Long by design: a list.\n#[must_use]\nfn long() {{\n{body}}}\n");
    assert!(long_functions("c.rs", &why, 6).is_empty());
}
