//! The documentation holds: every link between its pages lands on a file
//! and a heading that exist, every `flora-gate` command it shows names a
//! command and flags (and flag values) the binary accepts, and every one a
//! test can run here runs, against a mock, cut to size.

use std::path::{Path, PathBuf};

use crate::common::BIN;

fn pages() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = vec![root.join("README.md"), root.join("CONTRIBUTING.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    out.extend(docs);
    out
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces
/// to dashes.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a page's headings (outside code blocks).
fn anchors(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.push(slug(line.trim_start_matches('#')));
        }
    }
    out
}

#[test]
fn every_link_between_the_pages_lands() {
    let mut broken = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("read");
        let dir = page.parent().expect("a directory");
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = &rest[..end];
            if target.contains("://") || target.starts_with("mailto:") || target.contains(' ') {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
            let path = if file.is_empty() {
                page.clone()
            } else {
                dir.join(file)
            };
            if !path.exists() {
                broken.push(format!("{}: {target} (no such file)", page.display()));
                continue;
            }
            if !anchor.is_empty() {
                let there = std::fs::read_to_string(&path).expect("read");
                if !anchors(&there).iter().any(|a| a == anchor) {
                    broken.push(format!("{}: {target} (no such heading)", page.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// Words of a shell command line as the shell splits them (quotes and
/// backslashes), stopping at a comment, `&`, `;`, `|` or a redirection.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut started = false;
    let mut chars = line.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => {
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                started = true;
            }
            (None, '\\') => {
                if let Some(n) = chars.next() {
                    word.push(n);
                    started = true;
                }
            }
            (None, '#') if !started => break,
            (None, '&' | ';' | '|' | '>') => break,
            (None, c) if c.is_whitespace() => {
                if started {
                    out.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            (None, c) => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        out.push(word);
    }
    out
}

/// A `flora-gate` command shown in a `sh` block: its page and arguments.
struct Documented {
    page: PathBuf,
    args: Vec<String>,
}

/// Every `flora-gate` (or `cargo run -- …`) command in the pages' `sh` and
/// `bash` blocks, continuation lines joined.
fn documented_commands() -> Vec<Documented> {
    let mut out = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("read");
        let mut fenced = None::<String>;
        let mut joined = String::new();
        for line in text.lines() {
            if let Some(info) = line.strip_prefix("```") {
                fenced = match fenced {
                    Some(_) => None,
                    None => Some(info.trim().to_string()),
                };
                continue;
            }
            if !matches!(fenced.as_deref(), Some("sh" | "bash")) {
                continue;
            }
            // Continuation lines join the command they continue.
            if let Some(part) = line.strip_suffix('\\') {
                joined.push_str(part);
                joined.push(' ');
                continue;
            }
            joined.push_str(line);
            let command = std::mem::take(&mut joined);
            let mut w = words(command.trim());
            let args: Vec<String> = match w.first().map(String::as_str) {
                Some("flora-gate") => w.split_off(1),
                Some("cargo") if w.get(1).map(String::as_str) == Some("run") => {
                    match w.iter().position(|x| x == "--") {
                        Some(i) => w.split_off(i + 1),
                        None => continue,
                    }
                }
                _ => continue,
            };
            out.push(Documented {
                page: page.clone(),
                args,
            });
        }
    }
    out
}

/// Optional parts (`[--margin 0.1]`) dropped: they stand for what the
/// reader may add.
fn required(args: &[String]) -> Vec<String> {
    args.iter()
        .filter(|a| !a.starts_with('[') && !a.ends_with(']'))
        .cloned()
        .collect()
}

#[test]
fn every_documented_command_is_one_the_binary_accepts() {
    let mut checked = 0;
    let mut refused = Vec::new();
    for d in documented_commands() {
        let args: Vec<String> = required(&d.args)
            .into_iter()
            .map(|a| a.replace("$URL", "http://127.0.0.1:9"))
            .collect();
        let o = std::process::Command::new(BIN)
            .args(&args)
            .arg("--help")
            .env_remove("GITHUB_ACTIONS")
            .output()
            .expect("runs");
        checked += 1;
        if !o.status.success() {
            refused.push(format!(
                "{}: flora-gate {}\n  {}",
                d.page.display(),
                args.join(" "),
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
    }
    assert!(checked >= 40, "only {checked} commands found");
    assert!(
        refused.is_empty(),
        "documented commands the binary refuses:\n{}",
        refused.join("\n")
    );
}

/// Documented commands a test cannot run here, each with why. A line is
/// matched by its page and the start of its arguments.
const NOT_RUN_HERE: &[(&str, &str, &str)] = &[
    (
        "commands.md",
        "report --current result.json --format json --templates my-templates/",
        "stands for the reader's own templates",
    ),
    (
        "commands.md",
        "baseline refresh --out baselines/novel.json r1.json",
        "stands for the reader's own result files",
    ),
    (
        "distributed.md",
        "run --plan plan.json --shard 0/3",
        "a shard of a plan runs on its own machine, against a remote target",
    ),
    (
        "distributed.md",
        "merge shard-*.json",
        "needs every shard of the plan",
    ),
    (
        "distributed.md",
        "gate --result result.json -b baseline.json",
        "judges the merge above",
    ),
    (
        "scenarios.md",
        "run -s ramp -t http://127.0.0.1:8080 --tokens access_tokens.csv --time-scale 0.05",
        "2,000 users for 32 s: the headline test `the_bundled_ramp_at_a_twentieth_of_its_time` runs it",
    ),
    (
        "history.md",
        "baseline refresh --since-change-point perf/history",
        "needs three nights in the history; the page makes one",
    ),
];

/// How a documented command is run here: against the page's mock, with
/// lengths cut so that the whole documentation runs in a couple of minutes
/// (a `-d 10m` run for `2s`, five baseline runs for two, a stage plan for
/// one short stage, loose capacity objectives that a few requests decide).
fn runnable(args: &[String], url: &str) -> Vec<String> {
    let duet = args.iter().any(|a| a == "--baseline-target");
    let mut out = Vec::new();
    let mut it = required(args).into_iter().peekable();
    while let Some(a) = it.next() {
        let value = |v: Option<String>| v.unwrap_or_default();
        match a.as_str() {
            "-d" | "--duration" => {
                let _ = it.next();
                out.extend([a, if duet { "12s" } else { "2s" }.to_string()]);
            }
            "--warmup" => {
                let _ = it.next();
                out.extend([a, "0s".to_string()]);
            }
            "--runs" => {
                let _ = it.next();
                out.extend([a, "2".to_string()]);
            }
            "--stages" => {
                let _ = it.next();
                out.extend([a, "2s:4".to_string()]);
            }
            // A replay in seconds: the bundled trace's ten minutes at 120×.
            "--speed" => {
                let _ = it.next();
                out.extend([a, "120".to_string()]);
            }
            "--max-users" => {
                let _ = it.next();
                out.extend([a, "2".to_string()]);
            }
            "--slo" => {
                let v = value(it.next());
                let loose = match v.split_once('=') {
                    Some(("error_rate", _)) => "error_rate=0.3".to_string(),
                    Some((m, _)) => format!("{}=60000", m.replace("_p90", "_p50")),
                    None => v,
                };
                out.extend([a, loose]);
            }
            _ => out.push(loopback(&a, url)),
        }
    }
    // A baseline of runs at the scenario's own length: two short ones.
    let refresh = out.first().map(String::as_str) == Some("baseline");
    let lengthless = !out.iter().any(|a| a == "-d" || a == "--duration");
    if refresh && lengthless && out.iter().any(|a| a == "--runs" || a == "--mock") {
        out.extend(["-d".to_string(), "2s".to_string()]);
    }
    // A capacity search from one user, in one-second probes.
    if out.first().map(String::as_str) == Some("capacity") {
        for (flag, v) in [("--start", "1"), ("--probe", "1s"), ("--warmup", "0s")] {
            if !out.iter().any(|a| a == flag) {
                out.extend([flag.to_string(), v.to_string()]);
            }
        }
    }
    // No scenario warm-up to swallow the one short stage.
    if out.iter().any(|a| a == "--stages") && !out.iter().any(|a| a == "--warmup") {
        out.extend(["--warmup".to_string(), "0s".to_string()]);
    }
    // A scenario's own `base_url` is a fixed port: the page's mock has another.
    let runs_load = matches!(out.first().map(String::as_str), Some("run" | "capacity"));
    if runs_load && !out.iter().any(|a| a == "-t" || a == "--target") {
        out.extend(["-t".to_string(), url.to_string()]);
    }
    out
}

/// Any loopback or example URL (`$URL`, `http://127.0.0.1:8080`,
/// `http://candidate:8080`) becomes the page's mock.
fn loopback(arg: &str, url: &str) -> String {
    if arg == "$URL" {
        return url.to_string();
    }
    for host in ["127.0.0.1", "localhost", "candidate", "reference"] {
        if let Some(rest) = arg.strip_prefix(&format!("http://{host}:")) {
            let path = rest.find('/').map_or("", |i| &rest[i..]);
            return format!("{url}{path}");
        }
    }
    arg.to_string()
}

/// A sandbox a reader would run the pages in: a tokens file and the
/// repository's scenarios.
fn sandbox() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = crate::common::tokens_csv(dir.path(), 64);
    std::fs::rename(tokens, dir.path().join("access_tokens.csv")).expect("tokens");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::os::unix::fs::symlink(root.join("scenarios"), dir.path().join("scenarios"))
        .expect("link scenarios");
    std::fs::create_dir(dir.path().join("baselines")).expect("baselines/");
    dir
}

/// Run one documented command in `dir` with a deadline: its exit code and
/// what it printed.
fn run_in(dir: &Path, args: &[String]) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("GITHUB_OUTPUT")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            return (status.code(), err);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return (None, "did not finish within 180 s".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Every command the pages show runs as shown, page by page in one sandbox
/// each, against the mock the page starts (or a plain one). A command that
/// reads a file a later one writes is run again after the page's others.
/// Exit 1 is a verdict (a regression found), not a failure to run.
#[test]
fn every_documented_command_that_can_run_here_runs() {
    let mut failed = Vec::new();
    let mut ran = 0;
    let mut skipped = Vec::new();
    let commands = documented_commands();
    let mut pages: Vec<PathBuf> = commands.iter().map(|d| d.page.clone()).collect();
    pages.dedup();
    for page in pages {
        let name = page
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let dir = sandbox();
        let mut mock = crate::common::spawn_mock(&[]);
        let mut later = Vec::new();
        for d in commands.iter().filter(|d| d.page == page) {
            let shown = d.args.join(" ");
            if let Some((_, _, why)) = NOT_RUN_HERE
                .iter()
                .find(|(p, start, _)| *p == name && shown.starts_with(start))
            {
                skipped.push(format!("{name}: {shown} ({why})"));
                continue;
            }
            match d.args.first().map(String::as_str) {
                // The demo is the README's first command; CI runs it.
                Some("demo") => continue,
                Some("mock") => {
                    // The page's own mock, with its flags, on a free port.
                    let mut flags = required(&d.args[1..]);
                    if let Some(i) = flags.iter().position(|a| a == "--port") {
                        flags.drain(i..(i + 2).min(flags.len()));
                    }
                    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
                    drop(mock);
                    mock = crate::common::spawn_mock_in(dir.path(), &flags);
                    continue;
                }
                _ => {}
            }
            let args = runnable(&d.args, &mock.url);
            let started = std::time::Instant::now();
            let (code, err) = run_in(dir.path(), &args);
            eprintln!(
                "{:>6.1}s {name}: {}",
                started.elapsed().as_secs_f64(),
                args.join(" ")
            );
            ran += 1;
            match code {
                Some(0 | 1) => {}
                Some(2) if err.contains("os error 2") => later.push(args),
                _ => failed.push(format!(
                    "{name}: flora-gate {}\n  {code:?}: {}",
                    args.join(" "),
                    err.trim()
                )),
            }
        }
        for args in later {
            let (code, err) = run_in(dir.path(), &args);
            if !matches!(code, Some(0 | 1)) {
                failed.push(format!(
                    "{name}: flora-gate {}\n  {code:?}: {}",
                    args.join(" "),
                    err.trim()
                ));
            }
        }
    }
    eprintln!(
        "ran {ran} documented commands; not here:\n{}",
        skipped.join("\n")
    );
    assert_eq!(
        skipped.len(),
        NOT_RUN_HERE.len(),
        "a NOT_RUN_HERE entry no longer matches a page"
    );
    assert!(ran >= 25, "only {ran} commands ran");
    assert!(
        failed.is_empty(),
        "documented commands that failed:\n{}",
        failed.join("\n")
    );
}

#[test]
fn documented_commands_are_cut_to_size_and_pointed_at_the_mock() {
    let args = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
    let url = "http://127.0.0.1:5555";
    assert_eq!(
        runnable(
            &args("run -s novel -t http://127.0.0.1:8080 -c 8 -d 60s --warmup 5s [--x y]"),
            url
        ),
        args("run -s novel -t http://127.0.0.1:5555 -c 8 -d 2s --warmup 0s")
    );
    assert_eq!(
        runnable(&args("baseline refresh --mock --runs 5 -o b.json"), url),
        args("baseline refresh --mock --runs 2 -o b.json -d 2s")
    );
    assert_eq!(
        runnable(&args("capacity -s x -t $URL --max-users 64 --slo ttft_p90=800"), url),
        args("capacity -s x -t http://127.0.0.1:5555 --max-users 2 --slo ttft_p50=60000 --start 1 --probe 1s --warmup 0s")
    );
    assert_eq!(
        runnable(&args("run -s ramp --stages 10s:4,1m:64 -o r.json"), url),
        args("run -s ramp --stages 2s:4 -o r.json --warmup 0s -t http://127.0.0.1:5555")
    );
    assert_eq!(
        runnable(&args("run --scenario hypotheses -o h.json"), url),
        args("run --scenario hypotheses -o h.json -t http://127.0.0.1:5555")
    );
    assert_eq!(
        runnable(
            &args("run -t http://candidate:8080 --baseline-target http://reference:8080 -d 10m"),
            url
        ),
        args("run -t http://127.0.0.1:5555 --baseline-target http://127.0.0.1:5555 -d 12s")
    );
    assert_eq!(
        runnable(&args("run -t $URL --server-metrics http://localhost:9100/metrics --slo ttft_p90=800 --slo error_rate=0.01"), url),
        args("run -t http://127.0.0.1:5555 --server-metrics http://127.0.0.1:5555/metrics --slo ttft_p50=60000 --slo error_rate=0.3")
    );
}

#[test]
fn the_shell_words_are_split_as_a_shell_splits_them() {
    assert_eq!(
        words(r#"run --stages "to 10=10s:10,hold 10" -o 'a b' x\ y # comment"#),
        [
            "run",
            "--stages",
            "to 10=10s:10,hold 10",
            "-o",
            "a b",
            "x y"
        ]
    );
    assert_eq!(words("mock --port 8080 &"), ["mock", "--port", "8080"]);
    assert_eq!(
        words("compare -r x.json; echo \"exit $?\""),
        ["compare", "-r", "x.json"]
    );
    assert_eq!(words("report > report.md"), ["report"]);
}
