//! The nightly lifecycle a consuming repository runs (the `refresh` job of
//! `nightly-baseline.yml`, shown in docs/history.md with the released
//! action), run as Actions runs it: each `uses: ./` step's inputs over
//! action.yml's defaults, its run step's environment and script, against a
//! mock deployment and the fake GitHub. Two nights: the baseline proposed
//! once, the history on its branch growing by a line a night, one sticky
//! comment on the proposal updated.

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml::Value as Yaml;

use super::common::{spawn_mock, tokens_csv, BIN};
use super::fakegh::{fake, Shared};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn yaml(path: &str) -> Yaml {
    let text = std::fs::read_to_string(Path::new(ROOT).join(path)).expect("read");
    serde_yaml::from_str(&text).expect("yaml")
}

fn string(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => s.clone(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// What `${{ … }}` reads in the workflow and the action.
struct Context<'a> {
    inputs: BTreeMap<String, String>,
    steps: &'a BTreeMap<String, BTreeMap<String, String>>,
    runner_temp: &'a Path,
}

impl Context<'_> {
    fn eval(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${{") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find("}}").expect("closed expression") + start;
            out.push_str(&self.value(rest[start + 3..end].trim()));
            rest = &rest[end + 2..];
        }
        out.push_str(rest);
        out
    }

    fn value(&self, expr: &str) -> String {
        let parts: Vec<&str> = expr.split('.').collect();
        match parts.as_slice() {
            ["inputs", name] => self.inputs.get(*name).cloned().unwrap_or_default(),
            ["steps", id, "outputs", key] => self
                .steps
                .get(*id)
                .and_then(|o| o.get(*key))
                .cloned()
                .unwrap_or_default(),
            ["runner", "temp"] => self.runner_temp.display().to_string(),
            ["github", "token"] => "gh-token-nightly".into(),
            ["github", "event", "repository", "default_branch"] => "main".into(),
            _ => panic!("the test does not evaluate `{expr}`; teach it"),
        }
    }
}

/// `key=value` and `key<<DELIM … DELIM` lines of a `GITHUB_OUTPUT` file.
fn outputs(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if let Some((k, delim)) = l.split_once("<<") {
            let value: Vec<&str> = lines.by_ref().take_while(|x| *x != delim).collect();
            out.insert(k.to_string(), value.join("\n"));
        } else if let Some((k, v)) = l.split_once('=') {
            out.insert(k.to_string(), v.to_string());
        }
    }
    out
}

/// Run one `uses: ./` step as the composite action does.
#[allow(clippy::too_many_arguments)]
fn run_action_step(
    action: &Yaml,
    with: &BTreeMap<String, String>,
    steps: &BTreeMap<String, BTreeMap<String, String>>,
    workspace: &Path,
    runner_temp: &Path,
    api: &str,
    summary: &Path,
) -> (std::process::Output, BTreeMap<String, String>) {
    let mut inputs = BTreeMap::new();
    let bare = Context {
        inputs: BTreeMap::new(),
        steps,
        runner_temp,
    };
    for (k, v) in action["inputs"].as_mapping().expect("inputs") {
        inputs.insert(string(k), bare.eval(&string(&v["default"])));
    }
    inputs.extend(with.clone());
    let ctx = Context {
        inputs,
        steps,
        runner_temp,
    };
    let run = action["runs"]["steps"]
        .as_sequence()
        .expect("steps")
        .iter()
        .find(|s| s["id"] == Yaml::String("gate".into()))
        .expect("the run step");
    assert_eq!(
        run["if"],
        Yaml::String("inputs.mode != 'install'".into()),
        "install mode runs nothing but the install"
    );
    let out_file = runner_temp.join(format!("output-{}", ctx.inputs["mode"]));
    let _ = std::fs::remove_file(&out_file);
    let bin_dir = Path::new(BIN).parent().expect("dir");
    let mut cmd = std::process::Command::new("bash");
    cmd.args(["-e", "-c", &string(&run["run"])])
        .current_dir(workspace)
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("GITHUB_ACTION_PATH", ROOT)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_EVENT_NAME", "schedule")
        .env("GITHUB_REPOSITORY", "o/r")
        .env("GITHUB_API_URL", api)
        .env("GITHUB_SHA", "5eed0000000000000000000000000000000000ff")
        .env("GITHUB_OUTPUT", &out_file)
        .env("GITHUB_STEP_SUMMARY", summary)
        .env("RUNNER_TEMP", runner_temp)
        .env_remove("GITHUB_EVENT_PATH");
    for (k, v) in run["env"].as_mapping().expect("env") {
        cmd.env(string(k), ctx.eval(&string(v)));
    }
    let out = cmd.output().expect("bash runs");
    (out, outputs(&out_file))
}

/// The workflow's nightly job, with the deployment's URL, a short run and
/// two runs a night instead of five (the lifecycle, not the load, is tested).
fn nightly_steps() -> Vec<(Option<String>, BTreeMap<String, String>)> {
    let wf = yaml(".github/workflows/nightly-baseline.yml");
    let steps = wf["jobs"]["refresh"]["steps"].as_sequence().expect("steps");
    steps
        .iter()
        .filter(|s| s["uses"] == Yaml::String("./".into()))
        .map(|s| {
            let with = s["with"]
                .as_mapping()
                .expect("with")
                .iter()
                .map(|(k, v)| (string(k), string(v)))
                .collect();
            (s["id"].as_str().map(str::to_owned), with)
        })
        .collect()
}

fn decoded_history(s: &Shared) -> String {
    use base64::Engine as _;
    let f = s.lock().expect("lock");
    let (_, content) = f
        .files
        .iter()
        .rev()
        .find(|(p, _)| p == "history/novel-mock.jsonl")
        .expect("the history was written to the branch");
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(content)
            .expect("base64"),
    )
    .expect("utf-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_nightly_refreshes_proposes_and_comments_its_history() {
    let (api, s) = fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let workspace = dir.path().join("ws");
    let temp = dir.path().join("tmp");
    std::fs::create_dir_all(workspace.join("baselines")).expect("mkdir");
    std::fs::create_dir_all(&temp).expect("mkdir");
    tokens_csv(&temp, 4);
    let mock = spawn_mock(&["--ttft-ms", "30", "--itl-ms", "2", "--output-tokens", "16"]);
    let summary = dir.path().join("summary.md");
    let action = yaml("action.yml");
    let plan = nightly_steps();
    let modes: Vec<&str> = plan.iter().map(|(_, w)| w["mode"].as_str()).collect();
    assert_eq!(modes, ["refresh", "propose", "history"]);

    for night in 1..=2 {
        let mut steps: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (id, with) in &plan {
            let mut with = with.clone();
            if with["mode"] == "refresh" {
                with.insert("target".into(), mock.url.clone());
                with.insert("duration".into(), "2s".into());
                with.insert("args".into(), "--warmup 0s".into());
            }
            if with.contains_key("runs") {
                with.insert("runs".into(), "2".into());
            }
            // The workflow's expressions are evaluated here, with this
            // night's step outputs.
            let ctx = Context {
                inputs: BTreeMap::new(),
                steps: &steps,
                runner_temp: &temp,
            };
            let with: BTreeMap<String, String> =
                with.into_iter().map(|(k, v)| (k, ctx.eval(&v))).collect();
            let mode = with["mode"].clone();
            let api = api.clone();
            let (ws, tmp, sum, act, st) = (
                workspace.clone(),
                temp.clone(),
                summary.clone(),
                action.clone(),
                steps.clone(),
            );
            let (out, outs) = tokio::task::spawn_blocking(move || {
                run_action_step(&act, &with, &st, &ws, &tmp, &api, &sum)
            })
            .await
            .expect("joined");
            assert!(
                out.status.success(),
                "night {night}, mode {mode}:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if let Some(id) = id {
                steps.insert(id.clone(), outs);
            }
        }
        assert_eq!(steps["propose"]["pr-number"], "42", "{steps:?}");
        let history = decoded_history(&s);
        assert_eq!(history.lines().count(), night, "{history}");
        let record: serde_json::Value =
            serde_json::from_str(history.lines().last().expect("a line")).expect("json");
        assert_eq!(
            record["runs"], 2,
            "tonight is the median of the refresh's runs"
        );
        assert_eq!(record["commit"], "5eed0000000000000000000000000000000000ff");
        let f = s.lock().expect("lock");
        assert_eq!(f.comments.len(), 1, "one sticky comment, updated");
        let (pr, _, body, _) = &f.comments[0];
        assert_eq!(*pr, 42);
        assert!(
            body.contains("<!-- flora-gate:history-default -->"),
            "{body}"
        );
        assert!(body.contains("flora-gate history"), "{body}");
        assert!(body.contains(&format!("{night} nights")), "{body}");
        assert!(!body.contains("gh-token-nightly"));
    }
    let summary = std::fs::read_to_string(&summary).expect("summary");
    assert!(summary.contains("flora-gate history"), "{summary}");
    // The baseline was written in the workspace and proposed.
    let b = std::fs::read_to_string(workspace.join("baselines/novel-mock.json")).expect("baseline");
    assert!(b.contains("flora-gate/baseline"));
    let f = s.lock().expect("lock");
    assert!(
        f.log
            .iter()
            .any(|l| l == "PUT file baselines/novel-mock.json"),
        "{:?}",
        f.log
    );
    assert!(f.files.iter().all(|(_, c)| !c.contains("gh-token")));
    drop(f);
}

#[test]
fn the_documented_nightly_is_the_tested_one() {
    let wf =
        std::fs::read_to_string(Path::new(ROOT).join(".github/workflows/nightly-baseline.yml"))
            .expect("workflow");
    let part = |text: &str| -> String {
        let from = text.find("# nightly:begin").expect("begin marker");
        let to = text.find("# nightly:end").expect("end marker");
        text[from..to]
            .lines()
            .skip(1)
            .map(str::trim_end)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let tested = part(&wf).replace(
        "uses: ./ # zizmor: ignore[self-repository] the self-test runs this checkout's action.yml",
        "uses: org/flora-gate@v1",
    );
    let doc = std::fs::read_to_string(Path::new(ROOT).join("docs/history.md")).expect("docs");
    assert!(
        part(&doc).contains(tested.trim()) || normalise(&part(&doc)).contains(&normalise(&tested)),
        "docs/history.md's nightly steps differ from the workflow's:\n{tested}"
    );
}

fn normalise(s: &str) -> String {
    s.lines().map(str::trim).collect::<Vec<_>>().join("\n")
}
