//! finetune-operator: runs InstructLab fine-tuning jobs on Kubernetes.
//!
//! A `FineTuneJob` becomes an optional preprocess `Job` and a Kubeflow `PyTorchJob` or Trainer
//! v2 `TrainJob` (`spec.backend`); the operator writes their story into the FineTuneJob's status
//! and events.
//!
//! - [`api`]: the FineTuneJob types and the PyTorchJob and TrainJob subsets we use.
//! - [`children`]: pure functions from a FineTuneJob to its children (preprocess Job,
//!   PyTorchJob or TrainJob).
//! - [`names`]: every name, label and container name the operator sets or reads, in one place.
//! - [`status`]: the pure phase machine (observed world → next status, actions, events).
//! - [`logs`]: bounded log tails for event notes.
//! - [`client`]: the kube clients, with a timeout on every request but the watches.
//! - [`controller`]: the reconcile loop, the only part of the operator that talks to the apiserver.
//! - [`telemetry`]: metrics, health endpoints, logging.
//! - [`render`]: what `finetune-operator render` prints.
//! - [`plugin`]: `kubectl finetune`, the kubectl plugin (the binary run as `kubectl-finetune`): a
//!   client for users, apart from the operator.
//! - `testing`: fixtures shared by the tests and benchmarks (not operator behaviour).

pub mod api;
pub mod children;
pub mod client;
pub mod controller;
pub mod logs;
pub mod names;
pub mod plugin;
pub mod render;
pub mod status;
pub mod telemetry;
#[doc(hidden)]
pub mod testing;
