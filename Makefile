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

.PHONY: help install demo test test-sqlite test-postgres lint format check migrations bench clean

help:
	@echo "make demo    - install, migrate, load recorded markets, run web + worker on :$(PORT)"
	@echo "make test    - run the test suite (SQLite unless DATABASE_URL is set)"
	@echo "make lint    - ruff"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

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
