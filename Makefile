# keycloak-user-sync: local stack, tests and tools. `make help` lists the targets.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV       := .venv
PY         := $(VENV)/bin/python
TOOLS      := $(VENV)/.installed
COMPAT     := tests/compat
NPM_TOOLS  := $(COMPAT)/node_modules/.installed
EMULATOR   := target/debug/keycloak-emulator

.PHONY: help tools build dev up down status test lint unit compat stack-test sam-validate sam-build lambda-artifacts bench bench-emulator clean

help:
	@echo "make dev     run the whole stack locally: moto, Keycloak emulator, functions, API gateway"
	@echo "make up      start moto (DynamoDB, Secrets Manager) and the Keycloak emulator on loopback"
	@echo "make down    stop them"
	@echo "make test    format check, clippy, unit and integration tests, Keycloak admin-client suite"
	@echo "make bench   the bulk-sync benchmark (10 000 and 100 000 users)"
	@echo "make tools   install the pinned tools into .venv and $(COMPAT)/node_modules"

# Pinned Python tools (moto server, cargo-lambda, SAM CLI, pytest); reinstalled when the pins change.
$(TOOLS): infra/local/requirements.txt infra/local/constraints.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check \
		-r infra/local/requirements.txt -c infra/local/constraints.txt
	touch $@

# Pinned npm packages of the compatibility suite (Keycloak's official admin client).
$(NPM_TOOLS): $(COMPAT)/package.json $(COMPAT)/package-lock.json
	cd $(COMPAT) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

tools: $(TOOLS) $(NPM_TOOLS)

build:
	cargo build --workspace

dev: $(TOOLS) build
	$(PY) infra/local/stack.py dev

up: $(TOOLS) build
	$(PY) infra/local/stack.py up

down:
	python3 infra/local/stack.py down

status:
	python3 infra/local/stack.py status

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

unit:
	cargo test --workspace

compat: $(NPM_TOOLS) build
	cd $(COMPAT) && KEYCLOAK_EMULATOR_BIN=$(CURDIR)/$(EMULATOR) node --test --test-concurrency=2

stack-test: $(TOOLS) build
	$(VENV)/bin/pytest -q tests/stack

sam-validate: $(TOOLS)
	AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0 $(VENV)/bin/sam validate --lint

# unit: every crate's tests, including tests/e2e, which start the whole stack per test binary.
test: tools lint build unit compat stack-test sam-validate

# The bulk-sync benchmark (release build): 10 000 and 100 000 users; results in the README.
bench: $(TOOLS)
	cargo build --release -p keycloak-emulator -p bench
	target/release/bench $(BENCH_SIZES)

# Emulator speed on one core (figures quoted in infra/keycloak-emulator/README.md).
bench-emulator:
	cargo run --release -q -p keycloak-emulator --example loadtest

# ---------------------------------------------------------------------------------------------
# Deployable artifacts. One cargo-lambda compilation (release, arm64) builds every function;
# `sam build` (BuildMethod: makefile, build_in_source in samconfig.toml) runs build-<LogicalId>
# for each function, which only copies that function's bootstrap out of it.
LAMBDA_FUNCTIONS := $(notdir $(wildcard functions/*))

lambda-artifacts: $(TOOLS)
	rustup target add aarch64-unknown-linux-gnu
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cargo lambda build --release --arm64 $(addprefix -p ,$(LAMBDA_FUNCTIONS))

# LoginSyncFunction -> target/lambda/login-sync/bootstrap (the logical id in kebab case).
build-%Function: lambda-artifacts
	bin=$$(echo '$*' | sed -E 's/([a-z0-9])([A-Z])/\1-\2/g' | tr 'A-Z' 'a-z'); \
	cp "target/lambda/$$bin/bootstrap" "$(ARTIFACTS_DIR)/bootstrap"

sam-build: $(TOOLS)
	AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0 PATH="$(CURDIR)/$(VENV)/bin:$$PATH" \
		$(VENV)/bin/sam build

clean:
	rm -rf target $(VENV) $(COMPAT)/node_modules .dev .aws-sam
