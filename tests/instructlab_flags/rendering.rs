//! How the options render: only when set, each flag once, each value one argv element, credentials
//! only from secretKeyRefs.

use super::*;

#[test]
fn nothing_is_rendered_for_options_left_unset() {
    let r = rendered(&base());
    let names = flag_names(&r.training_args);
    for flag in NEW_FLAGS {
        assert!(!names.contains(*flag), "{flag} rendered though unset");
    }
    for env in [&r.training_env, &r.preprocess_env] {
        let names = env_names(env);
        for var in SECRET_ENV.iter().chain(&["TRUST_REMOTE_CODE"]) {
            assert!(!names.contains(var), "{var} set though nothing asks for it");
        }
    }
    // Switches turned off explicitly render nothing either.
    let off = with(
        with(
            with(base(), "/spec/training/useLiger", json!(false)),
            "/spec/training/trustRemoteCode",
            json!(false),
        ),
        "/spec/training/onDemandCheckpointing",
        json!(false),
    );
    assert_eq!(rendered(&off).training_args, r.training_args);
}

#[test]
fn every_option_renders_its_flags_once_each_value_one_element() {
    let r = rendered(&full());
    let args = main_ds_args(&r.training_args);
    let expected = [
        "--use_liger",
        "--trust_remote_code",
        "--on_demand_checkpointing",
        "--lr_scheduler=constant_with_warmup",
        "--fsdp_sharding_strategy=SHARD_GRAD_OP",
        "--adamw_weight_decay=0.01",
        "--adamw_beta1=0.8",
        "--adamw_beta2=.999",
        "--adamw_eps=1E-08",
        "--validation_split=0.1",
        "--validation_frequency=7",
        "--mlflow_tracking_uri=https://mlflow.example:5000/",
        "--mlflow_experiment_name=exp",
        "--mlflow_run_name=run-{rank}",
        "--wandb_project=proj",
        "--wandb_entity=team",
        "--wandb_run_name=wb-{time}",
        "--tensorboard_log_dir=/output/o/tb/logs",
    ];
    let new: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| NEW_FLAGS.contains(&a.split('=').next().unwrap()))
        .collect();
    assert_eq!(new, expected);
    // The user's extra arguments still come last.
    assert_eq!(args.last().unwrap(), "--disable_flash_attn");
    // Every worker runs the same argv.
    assert_eq!(r.worker_args, r.training_args);
    // The preprocess Job gets none of main_ds's flags.
    let pre = flag_names(&r.preprocess_args);
    for flag in NEW_FLAGS {
        assert!(!pre.contains(*flag), "{flag} given to data_process");
    }
}

#[test]
fn credentials_are_env_vars_from_secret_key_refs_of_the_training_containers() {
    let r = rendered(&full());
    let secret = |name: &str, key: &str| json!({"secretKeyRef": {"name": name, "key": key}});
    let find = |env: &[Value], name: &str| -> Option<Value> {
        env.iter().find(|e| e["name"] == name).cloned()
    };
    assert_eq!(
        find(&r.training_env, "MLFLOW_TRACKING_USERNAME").unwrap(),
        json!({"name": "MLFLOW_TRACKING_USERNAME", "valueFrom": secret("mlflow", "user")})
    );
    assert_eq!(
        find(&r.training_env, "MLFLOW_TRACKING_PASSWORD").unwrap(),
        json!({"name": "MLFLOW_TRACKING_PASSWORD", "valueFrom": secret("mlflow", "pass")})
    );
    assert_eq!(
        find(&r.training_env, "WANDB_API_KEY").unwrap(),
        json!({"name": "WANDB_API_KEY", "valueFrom": secret("wandb", "api-key")})
    );
    assert!(find(&r.training_env, "MLFLOW_TRACKING_TOKEN").is_none());
    // The token variant.
    let token = with(
        full(),
        "/spec/training/tracking/mlflow",
        json!({"trackingUri": "http://m", "token": secret("tok", "t")}),
    );
    let env = rendered(&token).training_env;
    assert_eq!(
        find(&env, "MLFLOW_TRACKING_TOKEN").unwrap(),
        json!({"name": "MLFLOW_TRACKING_TOKEN", "valueFrom": secret("tok", "t")})
    );
    assert!(find(&env, "MLFLOW_TRACKING_USERNAME").is_none());
    // The preprocess container never sees a tracking credential.
    for var in SECRET_ENV {
        assert!(
            find(&r.preprocess_env, var).is_none(),
            "{var} in preprocess"
        );
    }
    // The user's spec.env comes after the operator's variables (and so can override them).
    let user = with(
        full(),
        "/spec/env",
        json!([{"name": "WANDB_BASE_URL", "value": "https://wandb.example"}]),
    );
    let names = env_names(&rendered(&user).training_env)
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    let at = |n: &str| names.iter().position(|x| x == n).unwrap();
    assert!(at("WANDB_API_KEY") < at("WANDB_BASE_URL"), "{names:?}");
}

#[test]
fn trust_remote_code_reaches_both_phases() {
    let job = with(base(), "/spec/training/trustRemoteCode", json!(true));
    let r = rendered(&job);
    assert!(main_ds_args(&r.training_args).contains(&"--trust_remote_code".to_string()));
    let one = json!({"name": "TRUST_REMOTE_CODE", "value": "1"});
    // data_process has no flag for it and reads only the variable; main_ds loads the tokenizer
    // before it looks at its flag, so the training container gets the variable too.
    assert_eq!(
        r.preprocess_env.iter().filter(|e| **e == one).count(),
        1,
        "{:#?}",
        r.preprocess_env
    );
    assert_eq!(r.training_env.iter().filter(|e| **e == one).count(), 1);
    assert!(!flag_names(&r.preprocess_args).contains("--trust_remote_code"));
}

#[test]
fn tensorboard_logs_go_below_the_jobs_output_directory() {
    let tb = |output: Option<&str>| {
        let mut job = with(
            base(),
            "/spec/training/tracking",
            json!({"tensorboardDir": "tb"}),
        );
        job = match output {
            Some(path) => with(job, "/spec/output/path", json!(path)),
            None => without(job, "/spec/output/path"),
        };
        let args = rendered(&job).training_args;
        args.into_iter()
            .filter(|a| a.starts_with("--tensorboard_log_dir="))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        tb(Some("runs/a")),
        ["--tensorboard_log_dir=/output/runs/a/tb"]
    );
    assert_eq!(tb(None), ["--tensorboard_log_dir=/output/job/tb"]);
}
