//! The InstructLab versions each option needs, checked against the flags of every released wheel.

use super::*;

/// The oldest instructlab-training release the operator supports.
const OLDEST_SUPPORTED: &str = "0.12.1";

pub(crate) fn fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/instructlab/argparse-flags.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn version_key(v: &str) -> Vec<u32> {
    v.split('.').map(|p| p.parse().unwrap()).collect()
}

/// The releases of the fixture from the oldest supported on, oldest first.
pub(crate) fn supported(fixture: &Value) -> Vec<(String, Value)> {
    let mut list: Vec<(String, Value)> = fixture["versions"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(v, _)| version_key(v) >= version_key(OLDEST_SUPPORTED))
        .map(|(v, r)| (v.clone(), r.clone()))
        .collect();
    list.sort_by_key(|(v, _)| version_key(v));
    list
}

pub(crate) fn strings(v: &Value) -> Vec<String> {
    serde_json::from_value(v.clone()).unwrap()
}

fn release(fixture: &Value, version: &str) -> Value {
    fixture["versions"][version].clone()
}

/// The version table of docs/api.md: field → minimum instructlab-training version.
fn documented_minimums() -> BTreeMap<String, String> {
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/api.md")).unwrap();
    let section = docs
        .split("\n## ")
        .find(|s| s.starts_with("InstructLab versions"))
        .expect("docs/api.md has a section `## InstructLab versions`");
    let mut table = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `training.")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let field = cells[0].trim_matches('`').to_string();
        let version = cells.last().unwrap().to_string();
        assert_eq!(version_key(&version).len(), 3, "{line}");
        table.insert(field, version);
    }
    table
}

/// One job per typed field of the version table, with only that field set.
fn single_field_jobs() -> Vec<(&'static str, Value)> {
    let t = |pointer: &str, value: Value| with(base(), &format!("/spec/training{pointer}"), value);
    vec![
        ("training.lrScheduler", t("/lrScheduler", json!("linear"))),
        ("training.useLiger", t("/useLiger", json!(true))),
        (
            "training.fsdpShardingStrategy",
            t("/fsdpShardingStrategy", json!("FULL_SHARD")),
        ),
        (
            "training.adamw",
            t(
                "/adamw",
                json!({"weightDecay": "0", "beta1": "0.9", "beta2": "0.95", "eps": "1e-8"}),
            ),
        ),
        (
            "training.tracking",
            t(
                "/tracking",
                json!({"mlflow": {"trackingUri": "http://m", "experimentName": "e", "runName": "r"},
                       "wandb": {"project": "p", "entity": "e", "runName": "r"},
                       "tensorboardDir": "tb"}),
            ),
        ),
        (
            "training.validation",
            t("/validation", json!({"split": "0.1", "frequency": 10})),
        ),
        (
            "training.trustRemoteCode",
            t("/trustRemoteCode", json!(true)),
        ),
        (
            "training.onDemandCheckpointing",
            t("/onDemandCheckpointing", json!(true)),
        ),
    ]
}

#[test]
fn the_version_table_in_the_docs_matches_the_released_wheels() {
    let fixture = fixture();
    let releases = supported(&fixture);
    let table = documented_minimums();
    let jobs = single_field_jobs();
    let fields: BTreeSet<&str> = jobs.iter().map(|(f, _)| *f).collect();
    let documented: BTreeSet<&str> = table.keys().map(String::as_str).collect();
    assert_eq!(
        fields, documented,
        "docs/api.md's version table lists other fields"
    );

    let base_flags = flag_names(&main_ds_args(&rendered(&base()).training_args));
    for (field, job) in jobs {
        let minimum = &table[field];
        // The flags this field adds, as rendered.
        let added: Vec<String> = flag_names(&main_ds_args(&rendered(&job).training_args))
            .difference(&base_flags)
            .cloned()
            .collect();
        assert!(!added.is_empty(), "{field} renders nothing");
        for (version, release) in &releases {
            let known: BTreeSet<String> = strings(&release["main_ds"]).into_iter().collect();
            let missing: Vec<&String> = added.iter().filter(|f| !known.contains(*f)).collect();
            if version_key(version) >= version_key(minimum) {
                assert!(
                    missing.is_empty(),
                    "{field}: main_ds {version} lacks {missing:?}, though docs say {minimum}+"
                );
            } else {
                assert!(
                    !missing.is_empty(),
                    "{field}: main_ds {version} already accepts {added:?}; docs say {minimum}"
                );
            }
        }
    }
    // data_process reads TRUST_REMOTE_CODE from the version trustRemoteCode needs on.
    let minimum = &table["training.trustRemoteCode"];
    for (version, release) in &releases {
        let reads = strings(&release["data_process_env"]).contains(&"TRUST_REMOTE_CODE".into());
        assert_eq!(
            reads,
            version_key(version) >= version_key(minimum),
            "data_process {version}"
        );
    }
}

/// The examples' children, rendered and parsed back.
fn examples() -> Vec<(String, Value, Vec<Value>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let input = std::fs::read_to_string(&file).unwrap();
            let job: Value = serde_saphyr::from_str(&input).unwrap();
            // The same children `finetune-operator render` prints.
            let mut parsed = parse_finetunejob(&input).unwrap();
            parsed.metadata.uid = Some("u-1".to_string());
            parsed
                .metadata
                .namespace
                .get_or_insert_with(|| "default".to_string());
            let children = build_children(&parsed).unwrap();
            let mut docs = vec![serde_json::to_value(&children.training).unwrap()];
            docs.extend(
                children
                    .preprocess
                    .iter()
                    .map(|j| serde_json::to_value(j).unwrap()),
            );
            (file.display().to_string(), job, docs)
        })
        .collect()
}

fn container_args(child: &Value) -> Vec<Vec<String>> {
    let templates: Vec<&Value> = match child["kind"].as_str().unwrap() {
        "Job" => vec![&child["spec"]["template"]],
        // A TrainJob's training container is its trainer.
        "TrainJob" => return vec![strings(&child["spec"]["trainer"]["args"])],
        _ => child["spec"]["pytorchReplicaSpecs"]
            .as_object()
            .unwrap()
            .values()
            .map(|r| &r["template"])
            .collect(),
    };
    templates
        .into_iter()
        .flat_map(|t| t["spec"]["containers"].as_array().unwrap().clone())
        .map(|c| strings(&c["args"]))
        .collect()
}

#[test]
fn every_example_runs_on_the_instructlab_release_it_names() {
    let fixture = fixture();
    for (file, job, children) in examples() {
        let image = job["spec"]["image"].as_str().unwrap();
        let version = image
            .rsplit_once(":v")
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("{file}: image {image} has no vX.Y.Z tag"));
        let release = release(&fixture, version);
        assert!(release.is_object(), "{file}: no fixture for {version}");
        for child in &children {
            for args in container_args(child) {
                let (known, flags) = if child["kind"] == "Job" {
                    (strings(&release["data_process"]), flag_names(&args))
                } else {
                    (
                        strings(&release["main_ds"]),
                        flag_names(&main_ds_args(&args)),
                    )
                };
                for flag in flags {
                    assert!(
                        known.contains(&flag),
                        "{file}: {flag} is not a flag of InstructLab {version}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_other_fields_run_on_every_supported_release() {
    let fixture = fixture();
    // Every field that is not in the version table, set, in the two combinations they allow.
    let mut lora = base();
    lora["spec"]["preprocess"] = json!({"maxSeqLen": 2048, "chatTemplate": "/opt/t.py",
        "resources": {"requests": {"cpu": "3"}}});
    lora["spec"]["training"] = json!({
        "epochs": 2, "effectiveBatchSize": 64, "learningRate": "1e-5", "warmupSteps": 3,
        "maxBatchLen": 9000, "saveSamples": 1000, "seed": 7, "checkpointAtEpoch": true,
        "keepLastCheckpointOnly": true, "framework": "deepspeed", "cpuOffloadOptimizer": true,
        "lora": {"rank": 8, "alpha": 16, "dropout": "0.05", "targetModules": ["q_proj"],
                 "quantizeBits": 4},
        "extraArgs": ["--disable_flash_attn"],
    });
    let mut fsdp = base();
    fsdp["spec"]["training"] = json!({
        "epochs": 1, "fullStateAtEpoch": true, "cpuOffloadParams": true,
        "checkpointAtEpoch": false,
    });
    for job in [base(), lora, fsdp] {
        let r = rendered(&job);
        for (version, release) in supported(&fixture) {
            for flag in flag_names(&main_ds_args(&r.training_args)) {
                assert!(
                    strings(&release["main_ds"]).contains(&flag),
                    "{flag} is not a flag of main_ds {version}"
                );
            }
            for flag in flag_names(&r.preprocess_args) {
                assert!(
                    strings(&release["data_process"]).contains(&flag),
                    "{flag} is not a flag of data_process {version}"
                );
            }
        }
    }
    // And with every option, everything is a flag of the newest release.
    let (newest, release) = supported(&fixture).pop().unwrap();
    for flag in flag_names(&main_ds_args(&rendered(&full()).training_args)) {
        assert!(
            strings(&release["main_ds"]).contains(&flag),
            "{flag} is not a flag of main_ds {newest}"
        );
    }
}

#[test]
fn removed_logger_flags_are_never_rendered() {
    // InstructLab 0.14.0 removed --logger_type and --run_name; argparse exits 2 on them.
    let fixture = fixture();
    for (version, release) in supported(&fixture) {
        let flags = strings(&release["main_ds"]);
        let removed = version_key(&version) >= version_key("0.14.0");
        for flag in ["--logger_type", "--run_name"] {
            assert_eq!(
                !flags.contains(&flag.to_string()),
                removed,
                "{flag} in {version}"
            );
        }
    }
    let mut all: Vec<(String, Vec<String>)> = examples()
        .into_iter()
        .flat_map(|(file, _, children)| {
            children
                .iter()
                .flat_map(container_args)
                .map(|args| (file.clone(), args))
                .collect::<Vec<_>>()
        })
        .collect();
    let r = rendered(&full());
    all.push(("every option".to_string(), r.training_args));
    all.push(("every option".to_string(), r.preprocess_args));
    for (file, args) in all {
        for a in &args {
            let name = a.split('=').next().unwrap();
            assert!(
                name != "--logger_type" && name != "--run_name",
                "{file} renders {a}"
            );
        }
    }
}
