//! The manifests in `deploy/kubernetes/`: they parse, the Job is an Indexed Job whose shard
//! count is its completions and parallelism, a difference is never retried, every Secret
//! key and ConfigMap they refer to exists, and the container's command line, with the
//! ConfigMap's config and the Secret's values, is accepted by syncgate itself
//! (`--validate-only`: syncgate's own argument parser and config loader, no connections).

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::scenario::describe;

/// Every document of every `.yaml`/`.yml` file, with its file name.
fn manifests() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = Value::deserialize(doc).unwrap_or_else(|e| panic!("{name}: {e}"));
            if value.is_null() {
                continue;
            }
            for key in ["apiVersion", "kind"] {
                assert!(value[key].is_string(), "{name}: no {key}");
            }
            assert!(value["metadata"]["name"].is_string(), "{name}: no name");
            docs.push((name.clone(), value));
        }
    }
    docs
}

fn find<'a>(docs: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} named {name} among the manifests"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().expect("a string").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// A Secret's value of `key` (`stringData`, or base64 `data` taken as set).
fn secret_value(secret: &Value, key: &str) -> Option<String> {
    if let Some(v) = secret["stringData"][key].as_str() {
        return Some(v.to_string());
    }
    secret["data"][key]
        .as_str()
        .map(|_| "from-data".to_string())
}

/// `$(NAME)` in an argument replaced as Kubernetes does from the container's variables.
fn expand(arg: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = arg.to_string();
    for (name, value) in env {
        out = out.replace(&format!("$({name})"), value);
    }
    assert!(
        !out.contains("$("),
        "'{arg}' refers to a variable the container lacks"
    );
    out
}

#[test]
fn indexed_job_manifests_are_accepted_by_syncgate() {
    let docs = manifests();
    let cronjobs: Vec<&Value> = docs
        .iter()
        .map(|(_, d)| d)
        .filter(|d| d["kind"] == "CronJob")
        .collect();
    assert!(!cronjobs.is_empty(), "no CronJob");
    let scratch = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for cronjob in cronjobs {
        assert_eq!(cronjob["apiVersion"], "batch/v1");
        assert_eq!(cronjob["spec"]["concurrencyPolicy"], "Forbid");
        let job = &cronjob["spec"]["jobTemplate"]["spec"];
        assert_eq!(job["completionMode"], "Indexed");
        let shards = job["completions"].as_u64().expect("completions");
        assert!(shards > 1, "one shard is not a split");
        assert_eq!(job["parallelism"].as_u64(), Some(shards));
        assert!(job["backoffLimitPerIndex"].as_u64().is_some_and(|n| n <= 3));

        // Exit 1 (differences) fails its index at once: never retried. No exit code is
        // ignored (that would retry it without end).
        let rules = job["podFailurePolicy"]["rules"].as_array().expect("rules");
        let fail_index: Vec<u64> = rules
            .iter()
            .filter(|r| r["action"] == "FailIndex")
            .filter(|r| r["onExitCodes"]["operator"] == "In")
            .flat_map(|r| r["onExitCodes"]["values"].as_array().unwrap().clone())
            .map(|v| v.as_u64().unwrap())
            .collect();
        for code in [1, 4] {
            assert!(fail_index.contains(&code), "exit {code} is retried");
        }
        assert!(
            !fail_index.contains(&2),
            "an error (exit 2) deserves a retry"
        );
        for r in rules {
            assert!(
                r["action"] != "Ignore" || r["onExitCodes"].is_null(),
                "an ignored exit code is retried without end: {r}"
            );
        }

        let pod = &job["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        let containers = pod["containers"].as_array().expect("containers");
        let container = containers
            .iter()
            .find(|c| {
                strings(&c["command"])
                    .first()
                    .is_some_and(|c| c == "syncgate")
            })
            .expect("a container running syncgate");
        let rule_container = rules
            .iter()
            .filter_map(|r| r["onExitCodes"]["containerName"].as_str())
            .collect::<Vec<_>>();
        assert!(rule_container.iter().all(|n| container["name"] == *n));

        // The container's variables: Secret keys that exist, the Job's name.
        let mut env = BTreeMap::new();
        let mut from_secret = Vec::new();
        for var in container["env"].as_array().expect("env") {
            let name = var["name"].as_str().unwrap().to_string();
            let value = if let Some(v) = var["value"].as_str() {
                v.to_string()
            } else if var["valueFrom"]["secretKeyRef"].is_object() {
                let r = &var["valueFrom"]["secretKeyRef"];
                let secret = find(&docs, "Secret", r["name"].as_str().unwrap());
                let key = r["key"].as_str().unwrap();
                from_secret.push(name.clone());
                secret_value(secret, key)
                    .unwrap_or_else(|| panic!("{name}: the Secret has no key {key}"))
            } else if let Some(path) = var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                assert!(
                    path == "metadata.labels['batch.kubernetes.io/job-name']"
                        || path == "metadata.labels['job-name']",
                    "{name}: {path}"
                );
                "syncgate-check-29512345".to_string()
            } else {
                panic!("{name}: unexpected source {var}");
            };
            env.insert(name, value);
        }
        assert!(!from_secret.is_empty(), "no secret is passed");

        let mut args: Vec<String> = strings(&container["args"])
            .iter()
            .map(|a| expand(a, &env))
            .collect();
        assert_eq!(args.first().map(String::as_str), Some("check"));
        let value_of = |args: &[String], flag: &str| {
            let at = args.iter().position(|a| a == flag);
            at.map(|i| args[i + 1].clone())
        };
        assert_eq!(
            value_of(&args, "--shard"),
            Some(shards.to_string()),
            "--shard N must be the Job's completions"
        );
        assert_eq!(
            value_of(&args, "--run-id").as_deref(),
            Some("syncgate-check-29512345"),
            "the run id is the Job's name"
        );
        for flag in ["--lock", "--merge"] {
            assert!(args.iter().any(|a| a == flag), "{flag}");
        }

        // The config: a key of a mounted ConfigMap, written out for syncgate to load.
        let config_path = value_of(&args, "-C").expect("-C");
        let (mount, key) = config_path.rsplit_once('/').unwrap();
        let mounted = container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == mount)
            .unwrap_or_else(|| panic!("nothing is mounted at {mount}"));
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mounted["name"])
            .expect("the mount's volume");
        let configmap = find(
            &docs,
            "ConfigMap",
            volume["configMap"]["name"].as_str().unwrap(),
        );
        let text = configmap["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("the ConfigMap has no key {key}"));
        let config = scratch.path().join(format!("config-{checked}.toml"));
        std::fs::write(&config, text).unwrap();
        let at = args.iter().position(|a| a == "-C").unwrap() + 1;
        args[at] = config.to_str().unwrap().to_string();
        let output_dir = value_of(&args, "--output-dir").expect("--output-dir");
        assert!(
            container["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["mountPath"] == output_dir.as_str()),
            "--output-dir {output_dir} is not a mounted volume"
        );

        let validate = |env: &BTreeMap<String, String>, index: u64| {
            std::process::Command::new(env!("CARGO_BIN_EXE_syncgate"))
                .arg("--validate-only")
                .args(&args)
                .env_clear()
                .envs(env)
                .env("JOB_COMPLETION_INDEX", index.to_string())
                .output()
                .unwrap()
        };
        for index in [0, shards - 1] {
            let out = validate(&env, index);
            assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        }
        // The config really reads its secrets from those variables.
        for name in &from_secret {
            let mut without = env.clone();
            without.remove(name);
            let out = validate(&without, 0);
            assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains(&format!("environment variable {name} is not set")),
                "{stderr}"
            );
        }
        // And `--validate-only` refuses what a pod would: an index beyond the count.
        let out = validate(&env, shards);
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        checked += 1;
    }
    assert!(checked > 0);
}
