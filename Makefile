# PulseBus. Each target says what it does; `make help` lists them.
GO       ?= go
BIN      := bin
PKGS     := ./...
PROMTOOL ?= promtool
# Docker Compose v2 where installed (it understands deploy.*), else v1.
COMPOSE  ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
export TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test?sslmode=disable
# The Go toolchain every target builds with (go.mod's toolchain line; the go
# command fetches it through the module proxy on first use). Exported so that
# `make demo` and `make test` stay the whole quick start.
export GOTOOLCHAIN ?= go1.27.3
# govulncheck's database: the online one by default; CI builds it offline from
# the golang.org/x/vulndb module (VULNDB=offline).
VULNDB_VERSION := v0.0.0-20261105234957-e22db6528018
VULNCHECK      := golang.org/x/vuln/cmd/govulncheck@v1.9.0
# golangci-lint (config: .golangci.yml), installed into .cache/bin when it is
# missing or another version.
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT         ?= $(CURDIR)/.cache/bin/golangci-lint

.PHONY: help build test lint lint-install alerts-check fmt fuzz bench bench-quick bench-go demo dev clean up down compose-check vulncheck

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# VERSION is stamped into the binaries (relay --version): the nearest tag
# and the commit, from git.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)
LDFLAGS  = -X github.com/edupulse/pulsebus/internal/cli.release=$(VERSION)

build: ## build bin/relay and bin/consumer, stamped with VERSION (git describe)
	@echo "==> building $(BIN)/relay and $(BIN)/consumer $(VERSION)"
	$(GO) build -buildvcs=auto -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/relay ./cmd/consumer

test: ## go vet, then every test with the race detector (needs PostgreSQL, see TEST_DATABASE_URL)
	@echo "==> go vet"
	$(GO) vet $(PKGS)
	@echo "==> go test -race (PostgreSQL at $(TEST_DATABASE_URL))"
	$(GO) test -race -count=1 -timeout 12m $(PKGS)
	@echo "==> bench module unit tests"
	cd bench && $(GO) test -count=1 ./...
	@echo "==> interop module: the CloudEvents conformance suite"
	cd interop && $(GO) test -race -count=1 ./...

lint: alerts-check lint-install ## gofmt check, go vet, staticcheck and golangci-lint (import rules, doc comments, unused code, function size; .golangci.yml), and alerts-check
	@echo "==> gofmt -l"
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet $(PKGS)
	@echo "==> staticcheck"
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)
	@echo "==> golangci-lint (.golangci.yml: depguard import rules, revive exported, unused, gocyclo, funlen)"
	$(GOLANGCI_LINT) run $(PKGS)
	@echo "==> bench module: go vet, staticcheck"
	cd bench && $(GO) vet ./... && $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	@echo "==> interop module: go vet, staticcheck"
	cd interop && $(GO) vet ./... && $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

lint-install: ## install golangci-lint (GOLANGCI_LINT_VERSION) into .cache/bin when missing or another version
	@$(GOLANGCI_LINT) version 2>/dev/null | grep -q 'version $(GOLANGCI_LINT_VERSION:v%=%) ' || { \
		echo "==> installing golangci-lint $(GOLANGCI_LINT_VERSION) into .cache/bin"; \
		GOBIN=$(CURDIR)/.cache/bin $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION); }

alerts-check: ## promtool: check the Prometheus config and alert rules, and run each rule's unit tests (deploy/prometheus/tests)
	@echo "==> promtool check config, check rules, test rules"
	$(PROMTOOL) check config deploy/prometheus/prometheus.yml
	$(PROMTOOL) check rules deploy/prometheus/alerts.yml
	cd deploy/prometheus && $(PROMTOOL) test rules tests/*.test.yml

fmt: ## rewrite Go files with gofmt
	gofmt -w $$(git ls-files '*.go')

vulncheck: ## govulncheck every package of the three modules (VULNDB=offline builds the database from the golang.org/x/vulndb module)
ifeq ($(VULNDB),offline)
	@echo "==> govulncheck (database built offline from golang.org/x/vulndb@$(VULNDB_VERSION))"
	./scripts/vulndb-offline $(VULNDB_VERSION) $(CURDIR)/.cache/vulndb
	$(GO) run $(VULNCHECK) -db file://$(CURDIR)/.cache/vulndb ./...
	cd bench && $(GO) run $(VULNCHECK) -db file://$(CURDIR)/.cache/vulndb ./...
	cd interop && $(GO) run $(VULNCHECK) -db file://$(CURDIR)/.cache/vulndb ./...
else
	@echo "==> govulncheck (online database)"
	$(GO) run $(VULNCHECK) ./...
	cd bench && $(GO) run $(VULNCHECK) ./...
	cd interop && $(GO) run $(VULNCHECK) ./...
endif

fuzz: ## fuzz the envelope decoder, then dead-lettering into PostgreSQL, for FUZZTIME each (default 60s)
	$(GO) test ./pkg/envelope -run '^$$' -fuzz FuzzFromMessage -fuzztime $${FUZZTIME:-60s}
	$(GO) test ./pkg/dispatch -run '^$$' -fuzz FuzzDeadLetter -fuzztime $${FUZZTIME:-60s} -fuzzminimizetime 5s -parallel 1

bench: ## benchmark suite vs the PostgreSQL limit and Watermill (local PostgreSQL, in-process kfake; about 15 min); BENCH_ARGS="--scenarios drain" etc.
	@echo "==> pulsebench full run (PostgreSQL at $(TEST_DATABASE_URL); about 15 minutes); results in bench/results/"
	cd bench && $(GO) run ./cmd/pulsebench --markdown results/full.md $(BENCH_ARGS)

bench-quick: ## benchmark smoke test: every scenario with small sizes (under a minute); fails if a contender errors or loses events
	@echo "==> pulsebench --quick (PostgreSQL at $(TEST_DATABASE_URL))"
	cd bench && $(GO) run ./cmd/pulsebench --quick

bench-go: ## run the packages' Go benchmarks (PostgreSQL needed)
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

demo: ## run relay, consumer, handlers and a load generator on an embedded broker (DATABASE_URL; ARGS="--duration 30s --rate 500")
	@echo "==> building pulsebus-demo (the first build compiles every dependency: a few minutes on 2 cores)"
	$(GO) build -o $(BIN)/pulsebus-demo ./examples/demo/cmd/pulsebus-demo
	@echo "==> pulsebus-demo $(ARGS) (PostgreSQL at $${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}; Ctrl-C stops and drains, a second Ctrl-C aborts)"
	@$(BIN)/pulsebus-demo $(ARGS) || { status=$$?; [ $$status -eq 130 ] || exit $$status; }

dev: ## dev mode: embedded broker, relay and consumer without load; prints commands to publish and consume yourself
	@echo "==> building pulsebus-demo (the first build compiles every dependency: a few minutes on 2 cores)"
	$(GO) build -o $(BIN)/pulsebus-demo ./examples/demo/cmd/pulsebus-demo
	@$(BIN)/pulsebus-demo --dev $(ARGS)

up: ## start the compose stack (PostgreSQL, Kafka, SQL producer, 2 relays, consumer, Prometheus, Grafana, Jaeger); CONSOLE_TOKEN or a random one
	@token=$${CONSOLE_TOKEN:-$$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')}; \
	echo "==> $(COMPOSE) up; Grafana on http://localhost:3000, alerts on http://localhost:9095/alerts, traces on http://localhost:16686, console on http://localhost:8080 (token $$token)"; \
	CONSOLE_TOKEN=$$token VCS_REVISION=$$(git rev-parse HEAD 2>/dev/null) $(COMPOSE) up -d --build

down: ## stop the compose stack and delete its volumes
	$(COMPOSE) down -v

compose-check: alerts-check ## validate docker-compose.yml, the Dockerfile, the dashboard and the Prometheus files (no Docker engine needed)
	@echo "==> $(COMPOSE) config -q"
	CONSOLE_TOKEN=compose-check-token $(COMPOSE) config -q
	python3 -m json.tool deploy/grafana/dashboards/pulsebus.json >/dev/null
	@echo "==> tests over the compose file, the Dockerfile, Prometheus' config and the dashboard"
	$(GO) test -count=1 -run 'TestCompose|TestDockerfile|TestPrometheus|TestDashboard' ./deploy/

clean: ## remove build outputs
	rm -rf $(BIN)
