//! End-to-end tests on the real local control plane (tests/cluster/): kube-apiserver with its
//! admission and CEL, etcd, the garbage collector and Job controller, the scheduler, the real
//! Kubeflow training operator, and kwok playing the pods. The operator runs as a local process
//! under its own ServiceAccount and deploy/ RBAC, so a missing permission fails a test. The
//! harness is `testkit::e2e`.
//!
//! Run with `make test` (which starts the cluster), or `cargo test --test e2e` against a running
//! one. Without a cluster these tests fail; they never skip.

mod admission;
mod failures;
mod integrations;
mod interruptions;
mod kubectl_wait;
mod lifecycle;
mod logs;
mod operator_process;
mod plugin;
mod stalls;
mod trainjob;
