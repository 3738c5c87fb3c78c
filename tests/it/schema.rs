//! Results validate against the checked-in JSON Schema.

use std::time::Duration;

use crate::common::{chat_scenario, run, start_mock, Load};
use flora_gate::mock::MockConfig;

pub fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schema/result.schema.json"
    ))
    .expect("schema file");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::validator_for(&schema).expect("schema compiles")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_validates_against_schema_and_round_trips() {
    let mock = start_mock(MockConfig {
        ttft: Duration::from_millis(5),
        itl: Duration::from_millis(1),
        output_tokens: 8,
        faults: "500=0.2".parse().expect("valid"),
        ..MockConfig::default()
    })
    .await;
    let (res, _) = run(
        chat_scenario("[slo]\nttft_ms = 500\n"),
        &mock.url(),
        Load {
            concurrency: 2,
            duration: None,
            requests: Some(40),
            warmup: Duration::ZERO,
        },
    )
    .await;
    mock.stop().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("result.json");
    res.write(&path).expect("written");
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    let v = validator();
    let errors: Vec<String> = v
        .iter_errors(&value)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");

    let back = flora_gate::result::RunResult::read(&path).expect("reads back");
    assert!(back == res, "the result changed on a write/read round trip");

    // The schema is strict enough to catch a broken file.
    let mut broken = value.clone();
    broken["steps"][0]["ttft_ms"]["p50"] = serde_json::json!("fast");
    assert!(!v.is_valid(&broken));
    let mut broken = value;
    broken["blocks"].as_array_mut().expect("array").truncate(3);
    assert!(!v.is_valid(&broken));
}

#[test]
fn other_schema_versions_are_refused_with_a_hint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.json");
    std::fs::write(
        &path,
        r#"{"kind": "flora-gate/result", "schema_version": 0}"#,
    )
    .expect("write");
    let err = flora_gate::result::RunResult::read(&path).expect_err("old version");
    assert!(err.to_string().contains("schema_version"), "{err}");
    assert!(err.hint().is_some());
    std::fs::write(&path, "{not json").expect("write");
    let err = flora_gate::result::RunResult::read(&path).expect_err("bad json");
    assert!(err.to_string().contains("line 1"), "{err}");
}

#[test]
fn baselines_validate_against_their_schema() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schema/baseline.schema.json"
    ))
    .expect("schema");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("schema is JSON");
    let v = jsonschema::validator_for(&schema).expect("schema compiles");
    for path in ["baselines/novel-mock.json", "tests/fixtures/baseline.json"] {
        let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        let value: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&full).expect("read")).expect("json");
        let errors: Vec<String> = v
            .iter_errors(&value)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{path}: {errors:#?}");
        let mut broken = value.clone();
        broken["runs"] = serde_json::json!([]);
        assert!(
            !v.is_valid(&broken),
            "{path}: an empty baseline must not validate"
        );
    }
}
