"""Settings come from the environment and fail loudly and clearly when misconfigured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config import env

ROOT = Path(__file__).resolve().parent.parent


def _import_settings(
    extra_env: dict[str, str], drop: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in drop}
    environment.update(extra_env)
    code = "import config.settings as s; print(s.DATABASES['default']['ENGINE'], s.DEBUG)"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True
    )


def test_it_refuses_to_start_without_secret_key_outside_debug():
    result = _import_settings({"DEBUG": "0"}, drop=("SECRET_KEY", "SECRET_KEY_FILE"))
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_it_starts_without_secret_key_in_debug():
    result = _import_settings(
        {"DEBUG": "1"}, drop=("SECRET_KEY", "SECRET_KEY_FILE", "DATABASE_URL")
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["django.db.backends.sqlite3", "True"]


def test_it_reads_secret_key_from_a_file(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("from-a-file-" + "x" * 50 + "\n")
    code = "import config.settings as s; print(s.SECRET_KEY)"
    environment = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    environment.update({"SECRET_KEY_FILE": str(key_file), "DEBUG": "0"})
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "from-a-file-" + "x" * 50


def test_it_selects_postgres_from_database_url():
    result = _import_settings({"DATABASE_URL": "postgres://u:p@db.example:5432/trader"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "django.db.backends.postgresql"


def test_a_bad_database_url_never_echoes_the_password():
    result = _import_settings({"DATABASE_URL": "nosuchscheme://user:hunter2secret@host/db"})
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr
    assert "hunter2secret" not in result.stderr


def test_it_refuses_an_unknown_trading_mode():
    result = _import_settings({"TRADING_MODE": "yolo"})
    assert result.returncode != 0
    assert "TRADING_MODE must be one of replay, paper, live" in result.stderr


def test_env_secret_prefers_neither_when_both_are_set(monkeypatch, tmp_path):
    secret_file = tmp_path / "s"
    secret_file.write_text("from-file")
    monkeypatch.setenv("SOME_TOKEN", "direct")
    monkeypatch.setenv("SOME_TOKEN_FILE", str(secret_file))
    with pytest.raises(ImproperlyConfigured, match="either SOME_TOKEN or SOME_TOKEN_FILE"):
        env.env_secret("SOME_TOKEN")


def test_env_secret_reports_an_unreadable_file_without_its_content(monkeypatch, tmp_path):
    monkeypatch.delenv("SOME_TOKEN", raising=False)
    monkeypatch.setenv("SOME_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="SOME_TOKEN_FILE points to"):
        env.env_secret("SOME_TOKEN")


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", True), ("true", True), ("off", False), ("0", False)]
)
def test_env_bool_parses_common_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("FLAG", raw)
    assert env.env_bool("FLAG") is expected


def test_env_bool_rejects_garbage(monkeypatch):
    monkeypatch.setenv("FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="FLAG must be a boolean"):
        env.env_bool("FLAG")


def test_env_decimal_rejects_nan(monkeypatch):
    monkeypatch.setenv("BUDGET", "NaN")
    with pytest.raises(ImproperlyConfigured, match="BUDGET must be a finite"):
        env.env_decimal("BUDGET", "1")


def test_q_cluster_is_configured_for_safety(settings):
    q = settings.Q_CLUSTER
    assert q["orm"] == "default"
    assert q["timeout"] < q["retry"]
    assert q["max_attempts"] == 1
    assert q["catch_up"] is False


def test_cache_dir_gives_a_file_cache_shared_by_processes(tmp_path):
    code = (
        "import config.settings as s; c = s.CACHES['default']; print(c['BACKEND'], c['LOCATION'])"
    )
    environment = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    environment["CACHE_DIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    backend, location = result.stdout.split()
    assert backend.endswith("FileBasedCache") and location == str(tmp_path)


def test_kalshi_subaccount_and_foreign_orders_are_read_and_checked():
    code = "import config.settings as s; print(s.KALSHI_SUBACCOUNT, s.FOREIGN_ORDERS)"
    environment = dict(os.environ, KALSHI_SUBACCOUNT="4", FOREIGN_ORDERS="ignore")
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["4", "ignore"]
    environment = {
        k: v for k, v in os.environ.items() if k not in ("KALSHI_SUBACCOUNT", "FOREIGN_ORDERS")
    }
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True
    )
    assert result.stdout.split() == ["None", "halt"]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("KALSHI_SUBACCOUNT", "-1", "KALSHI_SUBACCOUNT must be an integer >= 0"),
        ("KALSHI_SUBACCOUNT", "two", "KALSHI_SUBACCOUNT must be an integer >= 0"),
        ("FOREIGN_ORDERS", "adopt", "FOREIGN_ORDERS must be one of halt, ignore"),
    ],
)
def test_a_bad_subaccount_or_foreign_orders_value_is_refused(name, value, message):
    result = _import_settings({name: value})
    assert result.returncode != 0
    assert message in result.stderr
