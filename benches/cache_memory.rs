//! What the operator's caches hold per finished job, in heap bytes.
//!
//! The operator's memory with thousands of finished jobs is almost all its watch caches: per job
//! one FineTuneJob, one PyTorchJob and its pods. This measures, with a counting allocator, one
//! object of each kind as the apiserver lists it (`benches/fixtures/cached/`, taken from the
//! local cluster after a job succeeded), as it was kept before (deserialized, then slimmed), and
//! as it is kept now (slimmed, then packed as JSON); then `JOBS` finished jobs in the caches' own
//! maps, keys and all, per job: the children and pods (packed), and the FineTuneJob as the
//! controller's store kept it before and as the finished jobs' figures are kept now.
//!
//! `cargo bench --bench cache_memory`; prints one JSON line per measurement.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

use finetune_operator::api::{FineTuneJob, PyTorchJob};
use finetune_operator::controller::cache_layout::{
    FinishedJobs, Packed, PackedStore, PodIndex, slim_finetune_job, slim_pod, slim_pytorch_job,
};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Event;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Bytes allocated and not yet freed.
struct Counting;

static HELD: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HELD.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const JOBS: usize = 10_000;

fn held() -> isize {
    HELD.load(Ordering::Relaxed)
}

/// The heap bytes `make` leaves held in what it returns.
fn bytes_held<T>(make: impl FnOnce() -> T) -> (T, isize) {
    let before = held();
    let value = make();
    (value, held() - before)
}

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/benches/fixtures/cached/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect(&path)
}

fn typed<K: DeserializeOwned>(value: &Value) -> K {
    serde_json::from_value(value.clone()).expect("a listed object")
}

/// One object three ways: as listed, as kept before (slimmed struct), as kept now (packed).
fn one<K>(kind: &str, value: &Value, slim: fn(&mut K)) -> Packed<K>
where
    K: DeserializeOwned + serde::Serialize,
{
    let (listed, as_listed) = bytes_held(|| Arc::new(typed::<K>(value)));
    drop(listed);
    let mut object = typed::<K>(value);
    slim(&mut object);
    // What the slimmed struct holds once its temporaries are gone: a fresh copy of it.
    let slimmed = serde_json::to_value(&object).expect("serializable");
    let (kept, as_struct) = bytes_held(|| Arc::new(typed::<K>(&slimmed)));
    drop(kept);
    let (packed, as_packed) = bytes_held(|| Packed::pack(&object).expect("serializable"));
    println!(
        "{}",
        json!({"object": kind, "listed_bytes": as_listed, "slimmed_struct_bytes": as_struct,
               "packed_bytes": as_packed, "json_bytes": slimmed.to_string().len()})
    );
    packed
}

fn renamed(value: &Value, name: &str, job: &str) -> Value {
    let mut v = value.clone();
    v["metadata"]["name"] = json!(name);
    v["metadata"]["uid"] = json!(format!("uid-{name}"));
    if v["metadata"]["labels"]
        .get(finetune_operator::names::JOB_NAME_LABEL)
        .is_some()
    {
        v["metadata"]["labels"][finetune_operator::names::JOB_NAME_LABEL] = json!(job);
    }
    v
}

fn main() {
    let (pod, ptj, ftj) = (
        fixture("pod.json"),
        fixture("pytorchjob.json"),
        fixture("finetunejob.json"),
    );
    black_box(one::<Pod>("pod", &pod, slim_pod));
    black_box(one::<PyTorchJob>("pytorchjob", &ptj, slim_pytorch_job));
    black_box(one::<FineTuneJob>("finetunejob", &ftj, slim_finetune_job));

    // The caches' own maps, keys included, filled with JOBS finished jobs.
    let pods = PodIndex::default();
    let children = PackedStore::<PyTorchJob>::default();
    let ((), in_caches) = bytes_held(|| {
        for i in 0..JOBS {
            let job = format!("job-{i:05}");
            let mut p: Pod = typed(&renamed(&pod, &format!("{job}-master-0"), &job));
            slim_pod(&mut p);
            pods.apply(&Event::Apply(p));
            let mut c: PyTorchJob = typed(&renamed(&ptj, &job, &job));
            slim_pytorch_job(&mut c);
            children.apply(&Event::Apply(c));
        }
    });
    let (jobs, job_store) = bytes_held(|| {
        let mut store = HashMap::new();
        for i in 0..JOBS {
            let mut j: FineTuneJob = typed(&renamed(&ftj, &format!("job-{i:05}"), ""));
            slim_finetune_job(&mut j);
            store.insert(ObjectRef::from(&j), Arc::new(j));
        }
        store
    });
    let finished = FinishedJobs::default();
    let ((), finished_bytes) = bytes_held(|| {
        for i in 0..JOBS {
            let mut j: FineTuneJob = typed(&renamed(&ftj, &format!("job-{i:05}"), ""));
            slim_finetune_job(&mut j);
            assert!(
                finished.divert(Event::Apply(j), |_| {}).is_some(),
                "a finished job"
            );
        }
    });
    assert_eq!(finished.rows().len(), JOBS, "the fixture is a settled job");
    println!(
        "{}",
        json!({"jobs": JOBS, "children_and_pods_bytes_per_job": in_caches / JOBS as isize,
               "finetunejob_store_bytes_per_job": job_store / JOBS as isize,
               "finished_job_bytes_per_job": finished_bytes / JOBS as isize})
    );
    black_box((pods, children, jobs, finished));
}
