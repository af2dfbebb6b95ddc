//! The Kubernetes manifests in `deploy/kubernetes/`, checked offline as far as no cluster allows: each parses as
//! YAML (PyYAML, from the test virtualenv `scripts/venv` makes) and holds what `transfer shard` needs of the
//! Indexed Job contract; the Slurm script is run for real by `shard_slurm`.

use std::path::PathBuf;
use std::process::Command;

/// The manifests as JSON, by file name, through PyYAML.
fn manifests() -> serde_json::Value {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = repo.join("target/sdk-venv/bin/python");
    assert!(python.exists(), "{} is missing: run ./scripts/venv (the test command does)", python.display());
    let script = r#"
import json, pathlib, sys, yaml
out = {}
for p in sorted(pathlib.Path(sys.argv[1]).glob("*.yaml")):
    docs = list(yaml.safe_load_all(p.read_text()))
    assert len(docs) == 1, p
    out[p.name] = docs[0]
print(json.dumps(out))
"#;
    let out = Command::new(python).args(["-c", script]).arg(repo.join("deploy/kubernetes")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_kubernetes_manifests_hold_the_indexed_job_contract() {
    let all = manifests();
    assert_eq!(
        all.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["merge-job.yaml", "plan-job.yaml", "shards-job.yaml"]
    );
    for (name, job) in all.as_object().unwrap() {
        assert_eq!((job["apiVersion"].as_str(), job["kind"].as_str()), (Some("batch/v1"), Some("Job")), "{name}");
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never", "{name}");
        let container = &pod["containers"][0];
        let args: Vec<&str> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        assert_eq!(args[0], "shard", "{name}: {args:?}");
        // Credentials come from a Secret, never from the manifest itself.
        assert!(container["envFrom"][0]["secretRef"]["name"].is_string(), "{name}");
        let text = serde_json::to_string(job).unwrap();
        for secret in ["ACCESS_KEY", "SECRET", "TOKEN"] {
            assert!(!text.contains(secret), "{name} names {secret}");
        }
    }
    let shards = &all["shards-job.yaml"]["spec"];
    assert_eq!(shards["completionMode"], "Indexed");
    assert_eq!(shards["podReplacementPolicy"], "Failed");
    assert!(shards["backoffLimitPerIndex"].as_u64().is_some_and(|n| n > 0));
    let rules = shards["podFailurePolicy"]["rules"].as_array().unwrap();
    // Exit status 2 is `transfer`'s usage error: retrying the index cannot cure it.
    let fail_index = rules.iter().find(|r| r["action"] == "FailIndex").unwrap();
    assert_eq!(fail_index["onExitCodes"]["values"], serde_json::json!([2]));
    assert_eq!(fail_index["onExitCodes"]["containerName"], "transfer");
    assert!(rules.iter().any(|r| r["action"] == "Ignore" && r["onPodConditions"][0]["type"] == "DisruptionTarget"));
    let args = &shards["template"]["spec"]["containers"][0]["args"];
    assert_eq!((args[0].as_str(), args[1].as_str()), (Some("shard"), Some("run")));
    // The index comes from JOB_COMPLETION_INDEX: no --index in the manifest.
    assert!(!args.as_array().unwrap().iter().any(|a| a == "--index"));
    // The plan the shards run is the one the plan Job writes, and the merge reads.
    let plan_args = &all["plan-job.yaml"]["spec"]["template"]["spec"]["containers"][0]["args"];
    let at = plan_args.as_array().unwrap().iter().position(|a| a == "--plan").unwrap();
    let plan = &plan_args[at + 1];
    assert_eq!(&args[2], plan);
    assert_eq!(&all["merge-job.yaml"]["spec"]["template"]["spec"]["containers"][0]["args"][2], plan);
    // As many completions as the plan Job asks for shards.
    let shards_asked = &plan_args[plan_args.as_array().unwrap().iter().position(|a| a == "--shards").unwrap() + 1];
    assert_eq!(shards["completions"].to_string(), shards_asked.as_str().unwrap());
}

#[test]
fn transfer_documents_exit_status_2_as_the_usage_error_the_manifest_relies_on() {
    let out = Command::new(env!("CARGO_BIN_EXE_transfer")).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("2  usage error"), "{help}");
}
