# finetune-operator — targets a newcomer can guess. `make help` lists them.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# Expensive outputs live outside the clone, so clean clones and CI reuse them. Cargo's target
# directory is keyed by the toolchain; cargo itself tracks every other input.
FTO_CACHE ?= $(HOME)/.cache/finetune-operator
export FTO_CACHE
export CARGO_TARGET_DIR ?= $(FTO_CACHE)/cargo-target/$(shell rustc -vV | sha256sum | cut -c1-16)
BIN := $(CARGO_TARGET_DIR)/debug/finetune-operator

include tests/cluster/cluster.mk

.PHONY: help build test unit-test lint fmt crds golden render musl image docker setup bench gpu-conformance

help: ## Show this help
	@grep -hE '^[a-z][a-z-]+:.*## ' $(MAKEFILE_LIST) | sort | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'
	@echo "  make cluster-up      start the local control plane (tests/cluster/README.md)"
	@echo "  make cluster-down    stop it"

setup: ## Install build prerequisites (musl target, musl-gcc)
	scripts/setup.sh

build: ## Build the operator (debug)
	cargo build --locked

test: ## Run every test: unit, mocked apiserver, and the real local control plane
	scripts/test.sh

bench: ## Benchmarks (not tests): parser, then the operator on the local cluster → BENCHMARKS.md
	scripts/bench.sh

ILAB_VERSION ?= 0.16.2
gpu-conformance: build ## Not in `make test`: real InstructLab on one NVIDIA GPU vs inspect-log (tests/gpu/README.md)
	tests/gpu/run.sh --bin $(BIN) --ilab $(ILAB_VERSION)

unit-test: ## Run only the tests that need no cluster
	cargo test --locked

lint: ## rustfmt check, clippy -D warnings, committed CRD and kustomize render
	cargo fmt --check
	# The e2e targets, the chart tests and the image test are `test = false` (they need the
	# cluster or the built image), so --all-targets skips them.
	cargo clippy --locked --all-targets --test e2e --test e2e_sequential --test chart --test image -- -D warnings
	kubectl kustomize deploy/ > /dev/null
	kubectl kustomize deploy/namespaced/ > /dev/null
	@echo "lint: ok"

fmt: ## Format the code
	cargo fmt

crds: ## Regenerate crds/ and the Helm chart's copy from the code
	cargo run --locked --quiet -- crd > crds/finetune.dev_finetunejobs.yaml
	cp crds/finetune.dev_finetunejobs.yaml charts/finetune-operator/files/

golden: ## Regenerate tests/golden/ after an intended change to the children (review the diff)
	UPDATE_GOLDEN=1 cargo test --locked --test golden

render: build ## Print the children of examples/finetune.yaml
	$(BIN) render -f examples/finetune.yaml

musl: setup ## Build the static release binary the Dockerfile ships (build/musl/)
	scripts/build-musl.sh build/musl

image: musl ## The container image without a container engine (OCI layout in build/image/), then its test
	scripts/image.sh build/musl/finetune-operator build/image
	cargo test --locked --test image

docker: ## Build the container image with a container engine (the same binary, on distroless)
	docker build -t finetune-operator:dev .

.PHONY: demo demo-down

demo: ## See it work: a FineTuneJob from Pending to Succeeded on the local cluster
	scripts/demo.sh

demo-down: ## Stop what `make demo` started: the operator and the local cluster
	scripts/demo.sh down
