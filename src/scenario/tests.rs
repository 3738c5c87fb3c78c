use super::*;

fn parse(text: &str) -> Result<Scenario, UserError> {
    Scenario::parse(text, Path::new("s.toml"), None, &[])
}

const MINIMAL: &str = r#"
name = "t"
[[steps]]
name = "chat"
path = "/v1/chat/completions"
body = '{"model": {{ vars.model | tojson }}, "stream": true}'
[vars]
model = "m"
"#;

#[test]
fn bundled_scenarios_load() {
    for (name, _) in BUNDLED {
        let s = Scenario::load(name, &[]).expect("bundled scenario loads");
        assert!(!s.steps.is_empty());
    }
}

#[test]
fn minimal_scenario_has_defaults() {
    let s = parse(MINIMAL).expect("valid");
    assert_eq!(s.load.concurrency, 4);
    assert_eq!(s.steps[0].method, reqwest::Method::POST);
    assert_eq!(s.steps[0].response, ResponseKind::Sse);
}

#[test]
fn unknown_key_names_line() {
    let text = MINIMAL.replace("[vars]", "[load]\nconcurency = 3\n[vars]");
    let err = parse(&text).expect_err("unknown key").to_string();
    assert!(err.contains("s.toml"), "{err}");
    assert!(err.contains("line 8"), "{err}");
    assert!(err.contains("concurency"), "{err}");
}

#[test]
fn wrong_type_names_line() {
    let text = MINIMAL.replace("[vars]", "[load]\nconcurrency = \"many\"\n[vars]");
    let err = parse(&text).expect_err("wrong type").to_string();
    assert!(err.contains("line 8"), "{err}");
}

#[test]
fn bad_duration_is_explained() {
    let text = MINIMAL.replace("[vars]", "[load]\nduration = \"fast\"\n[vars]");
    let err = parse(&text).expect_err("bad duration").to_string();
    assert!(err.contains("not a duration"), "{err}");
}

#[test]
fn undefined_variable_names_step_and_line() {
    let text = MINIMAL.replace("vars.model", "vars.modle");
    let err = parse(&text).expect_err("undefined").to_string();
    assert!(err.contains("steps[0].body"), "{err}");
    assert!(err.contains("line 6"), "{err}");
}

#[test]
fn variable_used_before_extraction_is_refused() {
    let text = r#"
name = "t"
[[steps]]
name = "a"
path = "/books/{{ book_id }}"
response = "json"
[[steps]]
name = "b"
path = "/books"
response = "json"
extract = { book_id = "/id" }
"#;
    let err = parse(text).expect_err("used before set").to_string();
    assert!(err.contains("steps[0].path"), "{err}");
}

#[test]
fn body_that_is_not_json_is_refused() {
    let text = MINIMAL.replace("{{ vars.model | tojson }}", "{{ vars.model }}");
    let err = parse(&text).expect_err("not json").to_string();
    assert!(err.contains("not JSON"), "{err}");
}

#[test]
fn bad_pointer_is_refused() {
    let text = MINIMAL.replace("[vars]", "extract = { id = \"id\" }\n[vars]");
    let err = parse(&text).expect_err("bad pointer").to_string();
    assert!(err.contains("JSON pointer"), "{err}");
}

#[test]
fn gate_table_is_read_and_checked() {
    let s = parse(&format!("{MINIMAL}\n[gate]\nmargin = 0.2\n")).expect("valid");
    assert_eq!(s.gate.margin, 0.2);
    let err = parse(&format!("{MINIMAL}\n[gate]\nmetrics = [\"ttft_p420\"]\n"))
        .expect_err("bad metric")
        .to_string();
    assert!(err.contains("[gate]") && err.contains("ttft_p420"), "{err}");
    // Any quantile of any latency is a metric, under its one name.
    let s = parse(&format!(
        "{MINIMAL}\n[gate]\nmetrics = [\"ttft_p95.0\", \"itl_p99\"]\n"
    ))
    .expect("valid");
    assert_eq!(s.gate.metrics, ["ttft_p95", "itl_p99"]);
    let err = parse(&format!("{MINIMAL}\n[gate]\nmargn = 0.2\n"))
        .expect_err("bad key")
        .to_string();
    assert!(err.contains("margn") && err.contains("line"), "{err}");
}

#[test]
fn paths_must_start_with_a_slash() {
    for bad in ["@other-host:8080/x", "v1/chat", "//other/x"] {
        let text = MINIMAL.replace("/v1/chat/completions", bad);
        let err = parse(&text).expect_err("refused").to_string();
        assert!(
            err.contains("single `/`") && err.contains("line 5"),
            "{err}"
        );
    }
}

#[test]
fn values_in_paths_are_one_encoded_segment() {
    let text = r#"
name = "t"
[[steps]]
name = "a"
path = "/books/{{ vars.id }}/outline"
response = "json"
[vars]
id = "x"
"#;
    let s = parse(text).expect("valid");
    let mut ctx = TemplateContext::new(&s, 0, "u", 1, BTreeMap::new());
    ctx.set("vars", serde_json::json!({"id": "../../admin?x=1#f"}));
    assert_eq!(
        s.render(&s.steps[0].path_template, &ctx).expect("rendered"),
        "/books/..%2F..%2Fadmin%3Fx%3D1%23f/outline"
    );
    ctx.set("vars", serde_json::json!({"id": ".."}));
    assert!(s.render(&s.steps[0].path_template, &ctx).is_err());
    ctx.set("vars", serde_json::json!({"id": 42}));
    assert_eq!(
        s.render(&s.steps[0].path_template, &ctx).expect("rendered"),
        "/books/42/outline"
    );
}

#[test]
fn endless_templates_run_out_of_fuel() {
    let text = MINIMAL.replace(
        "{\"model\"",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{\"model\"",
    );
    let err = parse(&text).expect_err("out of fuel").to_string();
    assert!(err.contains("fuel"), "{err}");
}

#[test]
fn var_override_wins_and_keeps_numbers() {
    let s = Scenario::parse(
        MINIMAL,
        Path::new("s.toml"),
        None,
        &[("n".into(), "12".into())],
    )
    .expect("valid");
    assert_eq!(s.vars["n"], serde_json::json!(12));
}

/// MINIMAL with `load` TOML before `[vars]`.
fn with_load(load: &str) -> String {
    MINIMAL.replace("[vars]", &format!("{load}\n[vars]"))
}

#[test]
fn stages_parse_into_a_shape_that_sets_users_and_length() {
    let s = parse(&with_load(
        "[load]\nwindow = \"5s\"\n[[load.stages]]\nduration = \"30s\"\ntarget = 10\n[[load.stages]]\nname = \"hold\"\nduration = \"1m\"\ntarget = 10\n[[load.stages]]\nduration = \"0s\"\ntarget = 200",
    ))
    .expect("valid stages");
    let shape = s.load.shape.as_ref().expect("a shape");
    assert_eq!(shape.model, Model::Closed);
    assert_eq!(shape.stages[1].name.as_deref(), Some("hold"));
    assert_eq!(s.load.duration, Some(Duration::from_secs(90)));
    assert_eq!(s.load.concurrency, 200);
    assert_eq!(s.load.window, Duration::from_secs(5));
}

#[test]
fn bad_load_shapes_name_the_line_and_key() {
    let cases = [
        // (load TOML, text the error must hold)
        ("[load]\nconcurrency = 3\n[[load.stages]]\nduration = \"1s\"\ntarget = 2", "line 9, key `load.stages`"),
        ("[load]\n[[load.stages]]\nduration = \"1s\"\ntarget = -2", "line 8, key `load.stages[0].target`"),
        ("[load]\n[[load.stages]]\nduration = \"1s\"\ntarget = 0", "every stage targets 0"),
        ("[load]\n[[load.stages]]\nduration = \"0s\"\ntarget = 5", "more than 0"),
        ("[load]\n[[load.stages]]\nduration = \"1s\"\ntarget = 20000", "above the limit"),
        ("[load]\nmodel = \"open\"\narrival = \"gamma:0\"\n[[load.stages]]\nduration = \"1s\"\ntarget = 5", "line 9, key `load.arrival`"),
        ("[load]\nmodel = \"open\"\n[[load.stages]]\nduration = \"1s\"\ntarget = 100000", "above the limit"),
        ("[load]\nmodel = \"sideways\"\n[[load.stages]]\nduration = \"1s\"\ntarget = 5", "key `load.model`"),
        ("[load]\nmodel = \"open\"", "needs `[[load.stages]]`"),
        ("[load]\nthink_time = \"uniform(3s, 1s)\"", "key `load.think_time`"),
        ("[load]\nfinish = \"never\"", "key `load.finish`"),
        ("[load]\nwindow = \"100ms\"", "`load.window`"),
        ("[load]\nstages = []", "the stage list is empty"),
        ("[load]\n[[load.stages]]\nname = \"\"\nduration = \"1s\"\ntarget = 5", "load.stages[0].name"),
    ];
    for (load, want) in cases {
        let err = parse(&with_load(load)).expect_err(load).to_string();
        assert!(err.contains("s.toml"), "{load}: {err}");
        assert!(err.contains(want), "{load}: {err}");
    }
}

#[test]
fn workflows_reference_steps_by_name_and_bad_mixes_are_refused() {
    let two =
        MINIMAL.to_string() + "[[steps]]\nname = \"other\"\npath = \"/x\"\nresponse = \"json\"\n";
    let s = parse(&(two.clone() + "[[workflows]]\nname = \"a\"\nweight = 3\nsteps = [\"other\", \"chat\"]\n[[workflows]]\nname = \"b\"\nsteps = [\"chat\"]\n"))
        .expect("valid mix");
    assert_eq!(s.workflows.len(), 2);
    assert_eq!(s.workflows[0].steps, [1, 0]);
    assert_eq!(s.workflows[1].weight, 1.0);
    // Without workflows, one of every step in order.
    let one = parse(&two).expect("present");
    assert_eq!(one.workflows.len(), 1);
    assert_eq!(one.workflows[0].steps, [0, 1]);
    for (mix, want) in [
        ("[[workflows]]\nname = \"a\"\nsteps = [\"nope\"]\n", "no step is named `nope`"),
        ("[[workflows]]\nname = \"a\"\nweight = 0\nsteps = [\"chat\"]\n", "sum to 0"),
        ("[[workflows]]\nname = \"a\"\nweight = -1\nsteps = [\"chat\"]\n", "workflows[0].weight"),
        ("[[workflows]]\nname = \"a\"\nweight = 1e308\nsteps = [\"chat\"]\n", "workflows[0].weight"),
        ("[[workflows]]\nname = \"a\"\nsteps = []\n", "at least one step"),
        ("[[workflows]]\nname = \"a\"\nsteps = [\"chat\"]\n[[workflows]]\nname = \"a\"\nsteps = [\"chat\"]\n", "unique"),
    ] {
        let err = parse(&(two.clone() + mix)).expect_err(mix).to_string();
        assert!(err.contains(want), "{mix}: {err}");
        assert!(err.contains("s.toml"), "{err}");
    }
}

#[test]
fn a_workflow_that_skips_the_step_its_variables_come_from_fails_at_load() {
    let text = MINIMAL.to_string()
        + "[[steps]]\nname = \"uses\"\npath = \"/b/{{ book_id }}\"\nresponse = \"json\"\n[[workflows]]\nname = \"broken\"\nsteps = [\"uses\"]\n";
    let err = parse(&text)
        .expect_err("book_id is never extracted")
        .to_string();
    assert!(err.contains("steps[1].path"), "{err}");
}

#[test]
fn server_metrics_are_read_and_a_bad_interval_is_refused() {
    let text = MINIMAL.replace(
        "[vars]",
        "[server_metrics]\nurls = [\"/metrics\"]\ninterval = \"2s\"\nmetrics = [\"pool_waiting\"]\n[vars]",
    );
    let s = parse(&text).expect("valid");
    assert_eq!(s.server_metrics.urls, ["/metrics"]);
    assert_eq!(s.server_metrics.interval, Some(Duration::from_secs(2)));
    assert_eq!(s.server_metrics.metrics, ["pool_waiting"]);
    let fast = text.replace("\"2s\"", "\"10ms\"");
    let err = parse(&fast).expect_err("too often").to_string();
    assert!(
        err.contains("server_metrics.interval") && err.contains("100ms"),
        "{err}"
    );
    let unknown = text.replace("interval", "intervall");
    let err = parse(&unknown).expect_err("unknown key").to_string();
    assert!(err.contains("intervall"), "{err}");
}

const SIZED: &str = r#"
name = "t"
books_per_user = 3
[[steps]]
name = "chat"
path = "/v1/chat/completions"
prompt_length = "lognormal(300, 0.5)"
output_length = 128
prefix = { count = 4, length = 100, scope = "book" }
body = '{"p": {{ prompt | tojson }}, "max_tokens": {{ max_tokens }}, "stream": true}'
"#;

#[test]
fn drawn_lengths_and_prefixes_parse() {
    let s = parse(SIZED).expect("valid");
    let l = s.steps[0].lengths.as_ref().expect("lengths");
    assert_eq!(l.unit, lengths::Unit::Tokens);
    assert_eq!(l.output, Some(lengths::Dist::Constant(128.0)));
    assert_eq!(
        l.prefix.map(|p| (p.count, p.scope)),
        Some((4, lengths::Scope::Book))
    );
    assert_eq!(s.uncalibrated(), vec![0]);
    assert_eq!(s.books_parallel, 1);
    let mut s2 = s.clone();
    s2.set_chars_per_token(1.5);
    assert!(s2.uncalibrated().is_empty());
    let p = parse(&SIZED.replace(
        "books_per_user = 3",
        "books_per_user = 3\nbooks_parallel = true",
    ))
    .expect("valid");
    assert_eq!(p.books_parallel, 3);
    let p = parse(&SIZED.replace(
        "books_per_user = 3",
        "books_per_user = 3\nbooks_parallel = 2",
    ))
    .expect("valid");
    assert_eq!(p.books_parallel, 2);
}

#[test]
fn bad_lengths_name_their_line_and_key() {
    for (from, to, says) in [
        (
            "\"lognormal(300, 0.5)\"",
            "\"lognormal(300, -1)\"",
            "line 7",
        ),
        ("\"lognormal(300, 0.5)\"", "\"gauss(3)\"", "not a length"),
        ("output_length = 128", "output_length = -4", "from 1 to"),
        ("count = 4", "count = 0", "count from 1"),
        (
            "books_per_user = 3",
            "books_per_user = 3\nbooks_parallel = 5",
            "between 1 and",
        ),
        (
            "prompt_length = \"lognormal(300, 0.5)\"\n",
            "",
            "set `prompt_length` too",
        ),
    ] {
        let text = SIZED.replace(from, to);
        let e = parse(&text).expect_err(to).to_string();
        assert!(e.contains(says), "{to}: {e}");
    }
}

#[test]
fn a_body_naming_prompt_without_a_length_fails_at_load() {
    let text = SIZED
        .replace("prompt_length = \"lognormal(300, 0.5)\"\n", "")
        .replace(
            "prefix = { count = 4, length = 100, scope = \"book\" }\n",
            "",
        );
    let e = parse(&text).expect_err("prompt is undefined").to_string();
    assert!(e.contains("prompt"), "{e}");
}
