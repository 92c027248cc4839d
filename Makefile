# orderflow: the README's commands. `make run` starts everything locally and
# places a demo order; `make test` runs every test (CI runs it via .ci/run).

SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/orderflow/target
# Queries are checked at compile time against the committed .sqlx/ data, so
# builds need no database; `make sqlx-prepare` refreshes it (see scripts/sqlx.sh).
export SQLX_OFFLINE ?= true
# Fewer parallel test binaries than cores would starve the emulator; more would
# thrash a 2-core machine.
CARGO_TEST_FLAGS ?=

.PHONY: help run stop test test-k8s test-pgbouncer deps build lint fmt bench sqlx-prepare kind-up kind-down

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

run: ## install what is missing, start everything, place a demo order
	@scripts/run.sh

stop: ## stop what `make run` started
	@scripts/stop.sh

deps: ## make sure PostgreSQL, Redis and the SQS emulator are installed and running
	@scripts/deps.sh

build: ## build every crate
	cargo build --workspace --all-targets

test: deps test-k8s ## every test, on the real PostgreSQL, Redis and SQS emulator
	cargo test --workspace $(CARGO_TEST_FLAGS)

test-pgbouncer: deps ## the end-to-end suite again, with both services' pools through PgBouncer (transaction pooling)
	@scripts/test-pgbouncer.sh

test-k8s: ## offline checks of the chart, Dockerfile, Tiltfile, kind config, dev manifests and Compose file (no cluster needed)
	@scripts/test-k8s.sh

lint: ## formatting, clippy (warnings are errors), and .sqlx/ up to date with every query
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	@scripts/deps.sh --no-sqs
	@scripts/sqlx.sh check

sqlx-prepare: ## regenerate .sqlx/ after changing a query or a migration
	@scripts/deps.sh --no-sqs
	@scripts/sqlx.sh prepare

kind-up: ## a local kind cluster with a registry, ingress-nginx and KEDA (needs docker, kind, kubectl and the internet)
	@k8s/kind/up.sh

kind-down: ## delete the kind cluster and its registry
	@k8s/kind/down.sh

fmt: ## format the code
	cargo fmt --all

bench: deps ## load benchmark of order intake (release build)
	@scripts/bench.sh
