//! The CRD's CEL rules and size limits, evaluated locally on valid and invalid FineTuneJobs. The
//! same rules and limits apply in the apiserver at admission: the end-to-end suite sends the same
//! refused specs (`testkit::admission`) there. Other OpenAPI checks (patterns) only the apiserver
//! evaluates (`schema_cases`).

use finetune_operator::api;
use kube::core::cel::Validator;
use serde_json::{Value, json};
use testkit::admission::{self, AdmissionCase, rule_cases, size_cases, with};

fn schema() -> Value {
    let crd = serde_json::to_value(api::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// A valid FineTuneJob: the one the refused cases change.
fn valid() -> Value {
    admission::base().json()
}

/// Applies the schema defaults (as the apiserver does before validation), checks the size
/// limits and runs the rules.
fn check(obj: &Value, old: Option<&Value>) -> Result<(), Vec<String>> {
    let schema = schema();
    let obj = kube::core::cel::apply_defaults(&schema, obj);
    let old = old.map(|o| kube::core::cel::apply_defaults(&schema, o));
    let mut errors = api::size_errors(&schema, &obj);
    if let Err(e) = Validator::new().validate(&schema, &obj, old.as_ref()) {
        errors.extend(e.into_vec().into_iter().map(|e| e.to_string()));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[test]
fn a_valid_job_passes() {
    check(&valid(), None).unwrap();
}

#[test]
fn invalid_jobs_are_refused_with_an_actionable_message() {
    assert_refused(&rule_cases(), |_| true);
}

/// Each case is refused, with its message in an error that also satisfies `also`.
fn assert_refused(cases: &[AdmissionCase], also: impl Fn(&str) -> bool) {
    for case in cases {
        let (what, message) = (case.name, case.message);
        match check(&case.apply_to(&valid()), None) {
            Ok(()) => panic!("{what}: accepted, expected a refusal containing {message:?}"),
            Err(errors) => assert!(
                errors.iter().any(|e| case.refused_in(e) && also(e)),
                "{what}: expected {message:?} in {errors:#?}"
            ),
        }
    }
}

#[test]
fn oversized_values_are_refused_with_the_field_and_the_limit() {
    // Locally, the message also names the limit.
    assert_refused(&size_cases(), |e| e.contains(", at most "));

    // At the limits, the same values pass.
    let at_limits = with(
        with(
            valid(),
            "/spec/env",
            json!([{"name": "A", "value": "x".repeat(api::MAX_ENV_VALUE_LENGTH as usize)}]),
        ),
        "/spec/podTemplate",
        json!({"annotations": {"example.com/a": "x".repeat(api::MAX_ANNOTATION_VALUE_LENGTH as usize)}}),
    );
    check(&at_limits, None).unwrap();
}

#[test]
fn hostile_but_harmless_values_pass_admission() {
    // These reach the program only as single argv elements; admission has no reason to refuse
    // them, and the escaping tests show they arrive literally.
    for path in [
        "$(HOME)/x.jsonl",
        "`id`.jsonl",
        "a; rm -rf ~.jsonl",
        "it's \"q\".jsonl",
        "données/ü.jsonl",
    ] {
        check(&with(valid(), "/spec/dataset/path", json!(path)), None)
            .unwrap_or_else(|e| panic!("{path}: {e:?}"));
    }
}

#[test]
fn spec_is_immutable_except_suspend_and_cleanup() {
    let old = valid();
    let refused = [
        (
            "training.epochs",
            with(valid(), "/spec/training/epochs", json!(4)),
        ),
        ("image", with(valid(), "/spec/image", json!("other:1"))),
        (
            "adding env",
            with(valid(), "/spec/env", json!([{"name": "A", "value": "b"}])),
        ),
        ("removing preprocess", {
            let mut v = valid();
            v["spec"].as_object_mut().unwrap().remove("preprocess");
            v
        }),
        (
            "resources.nodes",
            with(valid(), "/spec/resources", json!({"nodes": 2})),
        ),
        ("backend", with(valid(), "/spec/backend", json!("TrainJob"))),
    ];
    for (what, new) in refused {
        let errors = check(&new, Some(&old)).expect_err(what);
        assert!(
            errors
                .iter()
                .any(|e| e.contains("create a new FineTuneJob to train again")),
            "{what}: {errors:#?}"
        );
    }
    let allowed = [
        with(valid(), "/spec/suspend", json!(true)),
        with(
            valid(),
            "/spec/cleanup",
            json!({"deleteChildrenAfterFinished": true}),
        ),
    ];
    for new in allowed {
        check(&new, Some(&old)).unwrap();
    }
}

/// What a TrainJob cannot carry is refused only with that backend: the PyTorchJob takes it.
#[test]
fn backend_limits_apply_to_their_backend_only() {
    let limited: Vec<AdmissionCase> = rule_cases()
        .into_iter()
        .filter(|c| !c.with.is_empty())
        .collect();
    assert!(limited.len() >= 3, "{limited:?}");
    for case in limited {
        let on_pytorchjob = with(valid(), case.pointer, case.value.clone());
        check(&on_pytorchjob, None)
            .unwrap_or_else(|e| panic!("{}: refused on a PyTorchJob: {e:?}", case.name));
    }
    check(&with(valid(), "/spec/backend", json!("TrainJob")), None).unwrap();
    // A TrainJob queued by Kueue, with the default grace period.
    let queued = with(valid(), "/spec/backend", json!("TrainJob"));
    check(
        &with(queued, "/spec/scheduling/queueName", json!("q")),
        None,
    )
    .unwrap();
}
