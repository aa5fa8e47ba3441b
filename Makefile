# Everything runs inside .venv, created from pyproject.toml on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
STAMP := $(VENV)/.installed

# The demo runs on the embedded SQLite database in var/, in replay mode on recorded data:
# no keys, no network, never a real order.
DEMO_ENV := TRADING_MODE=replay FORECASTER=baseline DEBUG=0 SECRET_KEY_FILE=var/secret_key \
	ALLOWED_HOSTS=127.0.0.1,localhost CACHE_DIR=var/cache

# Tests never read a developer's .env: they get their own key and the paper default.
TEST_ENV := SECRET_KEY=test-secret-key-not-for-production-0123456789abcdef \
	DEBUG=0 TRADING_MODE=paper

.PHONY: help install lock lock-check image-test demo test test-sqlite test-postgres lint format check migrations bench clean

help:
	@echo "make demo    - install, migrate, load recorded markets, run web + worker on :$(PORT)"
	@echo "make test    - run the test suite (SQLite unless DATABASE_URL is set)"
	@echo "make lint    - ruff"
	@echo "make lock    - re-pin every dependency (with hashes) after editing pyproject.toml"
	@echo "make image-test - build the image and smoke-test web + worker (root, podman)"

# Every dependency (transitive ones too) is pinned with its hashes in the lock files, written
# from pyproject.toml by `make lock`: requirements.lock for the image, requirements-dev.lock
# (the same plus the dev tools) for .venv. Installs check every hash and add nothing unlocked.
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
UV_VERSION := 0.13.9
UV := $(BIN)/uv
LOCK_ARGS := --python-version 3.11 --universal --generate-hashes --quiet \
	--custom-compile-command "make lock"

$(STAMP): pyproject.toml $(DEV_LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes --no-deps -r $(DEV_LOCK)
	$(BIN)/pip check
	@touch $(STAMP)

install: $(STAMP)

$(UV):
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "uv==$(UV_VERSION)"

# After changing the dependencies in pyproject.toml: versions already locked stay as they are
# unless pyproject.toml asks for others (`make lock UPGRADE=1` moves everything to the newest).
lock: $(UV)
	$(UV) pip compile pyproject.toml $(LOCK_ARGS) $(if $(UPGRADE),--upgrade) -o $(LOCK)
	$(UV) pip compile pyproject.toml --extra dev $(LOCK_ARGS) $(if $(UPGRADE),--upgrade) \
		-o $(DEV_LOCK)

# CI: the committed lock files are exactly what `make lock` writes from pyproject.toml now.
lock-check: $(UV)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	cp $(LOCK) $(DEV_LOCK) "$$tmp/" && \
	$(UV) pip compile pyproject.toml $(LOCK_ARGS) -o "$$tmp/$(LOCK)" && \
	$(UV) pip compile pyproject.toml --extra dev $(LOCK_ARGS) -o "$$tmp/$(DEV_LOCK)" && \
	diff -u $(LOCK) "$$tmp/$(LOCK)" && diff -u $(DEV_LOCK) "$$tmp/$(DEV_LOCK)" || \
	{ echo "the lock files are out of date with pyproject.toml: run make lock"; exit 1; }

# Builds the image without a registry and runs it against the local PostgreSQL and Redis
# (docker/image-test.sh says what it asserts). Needs root, buildah and podman (installed from
# Debian's archive when missing).
image-test:
	bash docker/image-test.sh

var/secret_key:
	@mkdir -p var
	@$(PYTHON) -c "import secrets; print(secrets.token_urlsafe(50))" > var/secret_key
	@chmod 600 var/secret_key

demo: $(STAMP) var/secret_key
	$(DEMO_ENV) $(BIN)/python manage.py migrate --noinput
	$(DEMO_ENV) $(BIN)/python manage.py collectstatic --noinput -v0
	$(DEMO_ENV) $(BIN)/python manage.py load_recorded_markets
	$(DEMO_ENV) $(BIN)/python manage.py create_admin --username admin
	$(DEMO_ENV) $(BIN)/python manage.py setup_schedules
	@# The replay demo trades at once: the skill gate (which makes a forecaster beat the
	@# market on settled forecasts first) is off here; see README "What the demo shows".
	$(DEMO_ENV) $(BIN)/python manage.py set_risk skill_min_settled=0
	@echo "Serving on http://127.0.0.1:$(PORT)/  (admin: /admin/, health: /health/). Ctrl-C stops."
	@# Web + worker; SIGTERM, SIGINT or SIGHUP (to make's group too) stop both within 20 s.
	$(DEMO_ENV) docker/serve-demo.sh $(BIN) $(PORT)

test: $(STAMP)
	$(TEST_ENV) $(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

check: $(STAMP)
	$(TEST_ENV) $(BIN)/python manage.py check
	$(TEST_ENV) $(BIN)/python manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) var
