"""The deployment files: image, compose stack, entrypoint, gunicorn settings, production checks,
and a real nginx in front of a real gunicorn on loopback."""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import json
import os
import re
import runpy
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose.yml"
COMPOSE_DEV = ROOT / "compose.dev.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
NGINX_CONF = ROOT / "docker" / "nginx.conf"

SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|PRIVATE_KEY|KEY_ID", re.I)
# A value that is only a reference to the environment, with no literal default.
ENV_REFERENCE = re.compile(r"^\$\{[A-Z0-9_]+\}$")


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def environment_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def strings_in(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in strings_in(item)]
    if isinstance(value, list):
        return [s for item in value for s in strings_in(item)]
    return []


# --- compose.yml ---------------------------------------------------------------------------------


def test_compose_has_the_five_services_with_health_checks_and_volumes():
    compose = load(COMPOSE)
    services = compose["services"]
    assert {"postgres", "redis", "web", "worker", "nginx"} <= set(services)

    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])

    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    command = " ".join(redis["command"])
    for needle in (
        "requirepass",
        "/run/secrets/redis_password",
        "--maxmemory ",
        "--maxmemory-policy allkeys-lru",
        "--appendonly yes",
    ):
        assert needle in command, needle
    assert "ping" in " ".join(redis["healthcheck"]["test"])
    assert any(v.endswith(":/data") for v in redis["volumes"])

    named = set(compose["volumes"])
    for service in (postgres, redis):
        for volume in service["volumes"]:
            assert volume.split(":")[0] in named, volume

    assert "/health/" in " ".join(services["web"]["healthcheck"]["test"])
    assert services["web"]["command"] == ["web"]
    assert services["worker"]["command"] == ["worker"]
    assert "worker-health" in " ".join(services["worker"]["healthcheck"]["test"])


def test_compose_orders_startup_on_health():
    services = load(COMPOSE)["services"]
    for name in ("web", "worker"):
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
    # The worker starts after web has migrated.
    assert services["worker"]["depends_on"]["web"]["condition"] == "service_healthy"
    assert services["nginx"]["depends_on"]["web"]["condition"] == "service_healthy"


def test_every_service_has_resource_limits():
    for path in (COMPOSE,):
        for name, service in load(path)["services"].items():
            limits = service["deploy"]["resources"]["limits"]
            assert limits.get("cpus") and limits.get("memory"), name


def test_web_is_reachable_only_through_nginx_and_the_database_only_inside():
    compose = load(COMPOSE)
    services = compose["services"]
    assert "ports" not in services["web"]
    assert "ports" not in services["worker"]
    assert "ports" not in services["postgres"]
    assert "ports" not in services["redis"]
    assert compose["networks"]["backend"]["internal"] is True
    assert services["postgres"]["networks"] == ["backend"]
    # The proxy's fixed address is the one trusted for forwarded headers.
    app_env = environment_of(services["web"])
    nginx_ip = services["nginx"]["networks"]["backend"]["ipv4_address"]
    assert app_env["FORWARDED_ALLOW_IPS"] == nginx_ip == app_env["TRUSTED_PROXIES"]
    assert app_env["HTTPS"] == "1" and app_env["TRUST_X_FORWARDED_PROTO"] == "1"


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_DEV], ids=["compose", "compose.dev"])
def test_no_secret_is_written_in_a_compose_file(path):
    compose = load(path)
    for name, service in compose["services"].items():
        for key, value in environment_of(service).items():
            if key.endswith("_FILE") or not SECRET_NAME.search(key):
                continue
            assert value == "" or ENV_REFERENCE.match(value), f"{name}: {key} is inline"
        for text in strings_in(service):
            # A URL with a password in it (scheme://user:password@host).
            assert not re.search(r"://[^/\s:@]+:[^@\s]+@", text), f"{name}: {text}"
            # A Redis password given literally rather than read from the secret at start.
            for match in re.finditer(r"requirepass\s+(\S+)", text):
                assert "%s" in match.group(1) or match.group(1).startswith("$"), text
            assert "--redis-password" not in text
    for secret in (compose.get("secrets") or {}).values():
        assert set(secret) == {"file"}, secret


def test_the_app_reads_each_secret_from_a_docker_secret():
    services = load(COMPOSE)["services"]
    env = environment_of(services["web"])
    declared = set(services["web"]["secrets"])
    for key in (
        "SECRET_KEY_FILE",
        "DATABASE_PASSWORD_FILE",
        "REDIS_PASSWORD_FILE",
        "HEALTH_TOKEN_FILE",
        "KALSHI_PRIVATE_KEY_FILE",
        "LLM_API_KEY_FILE",
    ):
        path = env[key]
        assert path.startswith("/run/secrets/"), key
        assert path.removeprefix("/run/secrets/") in declared, key
    assert "@" not in env["DATABASE_URL"] or ":" not in env["DATABASE_URL"].split("@")[0][11:]


def test_the_dev_override_adds_the_tools_and_auto_reload():
    dev = load(COMPOSE_DEV)["services"]
    assert {"pgadmin", "redis-commander"} <= set(dev)
    assert dev["web"]["command"] == ["dev"]
    assert ".:/app" in dev["web"]["volumes"]
    assert environment_of(dev["web"])["DEBUG"] == "1"
    for name, service in dev.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"


def _compose_command() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, timeout=30
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.mark.parametrize(
    "files", [["compose.yml"], ["compose.yml", "compose.dev.yml"]], ids=["prod", "dev"]
)
def test_docker_compose_accepts_the_files(files, tmp_path):
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor docker-compose is installed")
    args = [*command, "--project-directory", str(ROOT)]
    for name in files:
        args += ["-f", str(ROOT / name)]
    # The example settings file is enough: no real secret is needed to validate.
    args += ["--env-file", str(ROOT / ".env.example"), "config"]
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_"))}
    result = subprocess.run(
        args, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=environment
    )
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)
    assert {"postgres", "redis", "web", "worker"} <= set(rendered["services"])


# --- Dockerfile and entrypoint -----------------------------------------------------------------


def test_dockerfile_is_multi_stage_slim_non_root_with_a_healthcheck():
    text = DOCKERFILE.read_text()
    instructions = [
        line.strip() for line in re.sub(r"\\\n", " ", text).splitlines() if line.strip()
    ]
    stages = [line for line in instructions if line.upper().startswith("FROM ")]
    assert len(stages) >= 2
    assert re.search(r"PYTHON_IMAGE=python:3\.11-slim", text)
    users = [line.split()[1] for line in instructions if line.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    health = [line for line in instructions if line.upper().startswith("HEALTHCHECK")]
    assert health and "/health/" in health[0] and "curl" not in health[0]
    assert any("collectstatic" in line for line in instructions if line.startswith("RUN"))
    assert 'ENTRYPOINT ["/app/docker/entrypoint.sh"]' in instructions
    # The build-time key is set for one RUN only, never in the image's environment.
    for line in instructions:
        upper = line.upper()
        if upper.startswith(("ENV ", "ARG ")):
            assert "SECRET_KEY" not in upper, line
    assert "pip wheel" in text and "--no-index" in text


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_image():
    entries = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line}
    for needle in (".env", "secrets/", ".venv/", "var/", ".git", "docker/certs/"):
        assert needle in entries, needle


@pytest.fixture
def fake_bin(tmp_path):
    """``python`` and ``gunicorn`` stand-ins that log what they were asked to run."""
    log = tmp_path / "calls.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = f"""#!/bin/sh
if [ "$1" = "-" ]; then
    echo "$(basename "$0") - <<$(tr '\\n' ' ')>>" >> {log}
else
    echo "$(basename "$0") $*" >> {log}
fi
"""
    for name in ("python", "gunicorn"):
        path = bin_dir / name
        path.write_text(script)
        path.chmod(0o755)

    def run(*args: str, **env: str) -> list[str]:
        environment = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", **env}
        log.write_text("")
        result = subprocess.run(
            ["sh", str(ENTRYPOINT), *args], env=environment, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        return log.read_text().splitlines()

    return run


def test_entrypoint_web_migrates_under_a_lock_then_execs_gunicorn(fake_bin):
    calls = fake_bin("web", "--workers", "3")
    assert len(calls) == 2
    assert calls[0].startswith("python - <<")
    for needle in ('call_command("migrate"', 'call_command("setup_schedules"', "pg_advisory_lock"):
        assert needle in calls[0]
    assert calls[1] == "gunicorn -c gunicorn.conf.py --workers 3"


def test_entrypoint_can_skip_the_deploy_steps(fake_bin):
    assert fake_bin("web", MIGRATE_ON_START="0") == ["gunicorn -c gunicorn.conf.py"]


def test_entrypoint_worker_runs_qcluster_without_migrating(fake_bin):
    assert fake_bin("worker") == ["python manage.py worker"]


def test_entrypoint_passes_manage_commands_and_programs_through(fake_bin):
    assert fake_bin("createsuperuser", "--username", "ops") == [
        "python manage.py createsuperuser --username ops"
    ]
    assert fake_bin("manage", "check", "--deploy") == ["python manage.py check --deploy"]
    assert fake_bin("python", "-V") == ["python -V"]


def test_entrypoint_dev_migrates_then_runs_the_reloading_server(fake_bin):
    calls = fake_bin("dev")
    assert calls[0].startswith("python - <<")
    assert calls[1] == "python manage.py runserver 0.0.0.0:8000"


def test_entrypoint_is_valid_posix_sh():
    assert subprocess.run(["sh", "-n", str(ENTRYPOINT)]).returncode == 0


# --- gunicorn.conf.py ---------------------------------------------------------------------------


def gunicorn_settings(monkeypatch, **env: str) -> dict:
    for name in (
        "GUNICORN_WORKERS",
        "WEB_CONCURRENCY",
        "GUNICORN_MAX_WORKERS",
        "FORWARDED_ALLOW_IPS",
        "GUNICORN_BIND",
        "LOG_FORMAT",
        "GUNICORN_THREADS",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


def test_gunicorn_defaults_are_safe_behind_a_local_proxy(monkeypatch):
    conf = gunicorn_settings(monkeypatch)
    cores = conf["cpu_count"]()
    assert conf["workers"] == max(2, min(2 * cores + 1, 8))
    assert conf["bind"] == ["127.0.0.1:8000"]
    assert conf["forwarded_allow_ips"] == "127.0.0.1,::1"
    assert conf["timeout"] == 30 and conf["graceful_timeout"] == 30
    assert conf["max_requests"] == 1000 and conf["max_requests_jitter"] == 100
    assert conf["preload_app"] is False
    if os.path.isdir("/dev/shm"):
        assert conf["worker_tmp_dir"] == "/dev/shm"
    # The access log never shows a query string (health tokens).
    assert "%(U)s" in conf["access_log_format"] and "%(r)s" not in conf["access_log_format"]
    assert "logconfig_dict" not in conf


def test_gunicorn_reads_its_settings_from_the_environment(monkeypatch):
    conf = gunicorn_settings(
        monkeypatch,
        GUNICORN_WORKERS="5",
        FORWARDED_ALLOW_IPS="172.28.57.10",
        GUNICORN_BIND="0.0.0.0:9000",
        GUNICORN_THREADS="4",
        LOG_FORMAT="json",
    )
    assert conf["workers"] == 5
    assert conf["forwarded_allow_ips"] == "172.28.57.10"
    assert conf["bind"] == ["0.0.0.0:9000"]
    assert conf["worker_class"] == "gthread"
    formatter = conf["logconfig_dict"]["formatters"]["json"]["()"]
    assert formatter == "config.logging.JsonFormatter"
    assert gunicorn_settings(monkeypatch, GUNICORN_MAX_WORKERS="2")["workers"] == 2


# --- manage.py check --deploy -------------------------------------------------------------------


def production_environment(**extra: str) -> dict[str, str]:
    environment = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SECRET_KEY_FILE", "DEBUG", "HEALTH_TOKEN", "HEALTH_TOKEN_FILE")
    }
    environment.update(
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        HTTPS="1",
        ALLOWED_HOSTS="trader.example.com",
        CSRF_TRUSTED_ORIGINS="https://trader.example.com",
        TRUST_X_FORWARDED_PROTO="1",
    )
    environment.update(extra)
    return environment


def run_deploy_check(environment: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_in_production():
    result = run_deploy_check(production_environment())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output
    assert "WARNING" not in output.upper().replace("NO ISSUES", "")


def test_check_deploy_fails_without_https():
    result = run_deploy_check(production_environment(HTTPS="0"))
    assert result.returncode != 0
    assert "security.W008" in result.stderr or "security.W008" in result.stdout


# --- A real nginx in front of a real gunicorn --------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, *, deadline: float = 30.0, **kwargs) -> httpx.Response:
    end = time.monotonic() + deadline
    last: Exception | None = None
    while time.monotonic() < end:
        try:
            return httpx.get(url, timeout=2, **kwargs)
        except httpx.HTTPError as exc:
            last = exc
            time.sleep(0.2)
    raise AssertionError(f"{url} never answered: {last}")


def self_signed_certificate(directory: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    (directory / "fullchain.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "privkey.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


# The environment compose.yml gives the nginx container, as the nginx image's entrypoint sees it
# when it writes nginx.conf from the template.
NGINX_ENVIRONMENT = {
    "HOME": "/root",
    "HOSTNAME": "nginx",
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "NGINX_VERSION": "1.27.5",
    "HTTPS_PORT": "443",
    "TLS_CERTIFICATE": "fullchain.pem",
    "TLS_CERTIFICATE_KEY": "privkey.pem",
}


def envsubst(text: str, environment: dict[str, str]) -> str:
    """What the nginx image does to a template: ${NAME} and $NAME replaced for the variables
    that are set in the environment, everything else (nginx's own $host, ...) left alone."""

    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        return environment.get(name, match.group(0))

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", replace, text)


def nginx_config_for_test(
    work: Path,
    *,
    upstream: int | str,
    http: int,
    https: int,
    environment: dict[str, str] | None = None,
    text: str | None = None,
    certs: Path | None = None,
) -> Path:
    """docker/nginx.conf itself, rendered as the nginx image renders it, with loopback ports and
    the paths of this test put in. ``upstream`` is a port on 127.0.0.1, or host:port."""
    rendered = envsubst(
        NGINX_CONF.read_text() if text is None else text,
        {**NGINX_ENVIRONMENT, "HTTPS_PORT": str(https), **(environment or {})},
    )
    if isinstance(upstream, int):
        upstream = f"127.0.0.1:{upstream}"
    # web's address (`set $desk_web http://<name>:8000;`, or an upstream block's server line).
    rendered, count = re.subn(
        r"(server\s+|http://)[A-Za-z0-9_.-]+:8000;", rf"\g<1>{upstream};", rendered
    )
    assert count, "docker/nginx.conf no longer names web's address"
    replacements = {
        "listen 80 default_server;": f"listen 127.0.0.1:{http} default_server;",
        "listen 443 ssl default_server;": f"listen 127.0.0.1:{https} ssl default_server;",
        "/etc/nginx/certs/": f"{certs or work / 'certs'}/",
        "pid /var/run/nginx.pid;": f"pid {work}/nginx.pid;",
        "access_log /dev/stdout desk;": f"access_log {work}/access.log desk;",
        "error_log /dev/stderr warn;": f"error_log {work}/error.log warn;",
        # The edge rate limit stays in place, loose enough for this test's own logins.
        "rate=20r/m;": "rate=600r/m;",
    }
    for old, new in replacements.items():
        assert old in rendered, f"docker/nginx.conf no longer contains {old!r}"
        rendered = rendered.replace(old, new)
    temp = work / "temp"
    temp.mkdir(exist_ok=True)
    temp.chmod(0o777)
    paths = "".join(
        f"    {kind}_temp_path {temp}/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    rendered = rendered.replace("http {\n", "http {\n" + paths, 1)
    path = work / "nginx.conf"
    path.write_text(rendered)
    return path


def nginx_test(nginx: str, work: Path, config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [nginx, "-t", "-p", str(work), "-c", str(config), "-e", str(work / "error.log")],
        capture_output=True,
        text=True,
        timeout=60,
    )


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


@pytest.fixture(scope="module")
def proxied_site(tmp_path_factory):
    """gunicorn (gunicorn.conf.py) on loopback behind nginx (docker/nginx.conf), production
    settings, SQLite in a temporary folder, static files collected with the manifest."""
    nginx = nginx_binary()
    if nginx is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    work = tmp_path_factory.mktemp("proxy")
    (work / "certs").mkdir()
    self_signed_certificate(work / "certs")
    upstream, http, https = free_port(), free_port(), free_port()
    token = secrets.token_urlsafe(32)
    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "REDIS_", "SECRET_KEY", "HEALTH_TOKEN"))
    }
    environment.update(
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        HTTPS="1",
        TRUST_X_FORWARDED_PROTO="1",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        CSRF_TRUSTED_ORIGINS=f"https://127.0.0.1:{https}",
        TRUSTED_PROXIES="127.0.0.1",
        FORWARDED_ALLOW_IPS="127.0.0.1",
        GUNICORN_BIND=f"127.0.0.1:{upstream}",
        GUNICORN_WORKERS="2",
        VAR_DIR=str(work / "var"),
        STATIC_ROOT=str(work / "static"),
        STATICFILES_MANIFEST="1",
        HEALTH_TOKEN=token,
        TRADING_MODE="replay",
        LOG_FORMAT="json",
        AXES_FAILURE_LIMIT="3",
    )
    setup = """
import django
django.setup()
from django.core.management import call_command
from django.contrib.auth.models import User
from django.utils import timezone
from trading.models import JobRun
call_command("migrate", verbosity=0)
call_command("collectstatic", interactive=False, verbosity=0)
User.objects.create_user("ops", password="correct-horse-battery", is_staff=True)
call_command("grant_role", "ops", "viewer", verbosity=0)
JobRun.objects.create(job="heartbeat", status="ok", finished_at=timezone.now())
"""
    subprocess.run(
        [sys.executable, "-c", setup], cwd=ROOT, env=environment, check=True, timeout=180
    )
    logs = work / "gunicorn.log"
    with logs.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
            cwd=ROOT,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    proxy = None
    try:
        wait_for(f"http://127.0.0.1:{upstream}/health/live/")
        config = nginx_config_for_test(work, upstream=upstream, http=http, https=https)
        checked = subprocess.run(
            [nginx, "-t", "-p", str(work), "-c", str(config), "-e", str(work / "error.log")],
            capture_output=True,
            text=True,
        )
        assert checked.returncode == 0, checked.stderr
        proxy = subprocess.Popen(
            [
                nginx,
                "-p",
                str(work),
                "-c",
                str(config),
                "-e",
                str(work / "error.log"),
                "-g",
                "daemon off;",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(f"http://127.0.0.1:{http}/health/live/")
        yield {
            "https": f"https://127.0.0.1:{https}",
            "http": f"http://127.0.0.1:{http}",
            "token": token,
            "work": work,
            "logs": logs,
        }
    finally:
        for process in (proxy, server):
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()


@pytest.fixture
def browser(proxied_site):
    with httpx.Client(base_url=proxied_site["https"], verify=False, timeout=10) as client:
        yield client


@pytest.mark.slow
def test_plain_http_is_redirected_to_https_except_liveness(proxied_site):
    response = httpx.get(f"{proxied_site['http']}/accounts/login/")
    assert response.status_code == 301
    assert response.headers["location"] == f"{proxied_site['https']}/accounts/login/"
    assert httpx.get(f"{proxied_site['http']}/health/live/").status_code == 200


@pytest.mark.slow
def test_pages_are_served_over_https_with_secure_cookies_and_no_redirect_loop(browser):
    # A client's own X-Forwarded-Proto is overwritten by nginx: still https, still no redirect.
    for headers in ({}, {"X-Forwarded-Proto": "http"}):
        response = browser.get("/accounts/login/", headers=headers)
        assert response.status_code == 200, response.text[:300]
    assert "max-age=31536000" in response.headers["strict-transport-security"]
    csrf_cookie = response.headers["set-cookie"]
    assert "csrftoken=" in csrf_cookie and "Secure" in csrf_cookie
    assert response.headers["x-frame-options"] == "DENY"


@pytest.mark.slow
def test_static_files_are_served_hashed_and_cached(browser):
    page = browser.get("/accounts/login/").text
    match = re.search(r'href="(/static/css/app\.[0-9a-f]{12}\.css)"', page)
    assert match, "the page does not link the hashed stylesheet"
    response = browser.get(match.group(1))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert "max-age=315360000" in response.headers["cache-control"]


@pytest.mark.slow
def test_login_works_through_the_proxy_and_the_session_cookie_is_secure(browser):
    browser.get("/accounts/login/")
    origin = str(browser.base_url).rstrip("/")
    response = browser.post(
        "/accounts/login/",
        data={
            "username": "ops",
            "password": "correct-horse-battery",
            "csrfmiddlewaretoken": browser.cookies["csrftoken"],
        },
        headers={"Origin": origin, "Referer": f"{origin}/accounts/login/"},
    )
    assert response.status_code == 302, response.text[:500]
    assert response.headers["location"] == "/"
    assert "Secure" in response.headers["set-cookie"]
    assert browser.get("/").status_code == 200


@pytest.mark.slow
def test_health_through_the_proxy_public_and_detailed(proxied_site, browser):
    response = browser.get("/health/")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ok"}
    assert browser.get("/health/detail/").status_code == 403
    detail = browser.get(
        "/health/detail/?format=json", headers={"Authorization": f"Bearer {proxied_site['token']}"}
    )
    assert detail.status_code == 200
    assert detail.json()["WorkerHeartbeat()"] == "OK"
    assert browser.get(f"/health/detail/?token={proxied_site['token']}").status_code == 200


@pytest.mark.slow
def test_spoofed_forwarded_for_does_not_escape_the_lockout(proxied_site):
    origin = proxied_site["https"]
    with httpx.Client(base_url=origin, verify=False, timeout=10) as client:
        client.get("/accounts/login/")
        for attempt in range(3):
            client.post(
                "/accounts/login/",
                data={
                    "username": "locked-user",
                    "password": "wrong",
                    "csrfmiddlewaretoken": client.cookies["csrftoken"],
                },
                headers={"Origin": origin, "X-Forwarded-For": f"203.0.113.{attempt + 1}"},
            )
        response = client.post(
            "/accounts/login/",
            data={
                "username": "locked-user",
                "password": "wrong",
                "csrfmiddlewaretoken": client.cookies["csrftoken"],
            },
            headers={"Origin": origin, "X-Forwarded-For": "198.51.100.77"},
        )
    assert response.status_code == 429
    assert "locked" in response.text.lower()  # django-axes' answer, not nginx's rate limit


@pytest.mark.slow
def test_logs_are_json_and_never_show_the_health_token(proxied_site, browser):
    browser.get(f"/health/detail/?token={proxied_site['token']}")
    time.sleep(0.5)
    gunicorn_lines = proxied_site["logs"].read_text().splitlines()
    json_lines = [json.loads(line) for line in gunicorn_lines if line.startswith("{")]
    assert any(entry["logger"] == "gunicorn.access" for entry in json_lines)
    for entry in json_lines:
        assert {"time", "level", "logger", "message"} <= set(entry)
    nginx_log = (proxied_site["work"] / "access.log").read_text()
    assert "/health/detail/" in nginx_log
    for text in ("\n".join(gunicorn_lines), nginx_log):
        assert proxied_site["token"] not in text


# --- Defects found when the stack ran for real --------------------------------------------------


def test_entrypoint_deploy_steps_log_json_lines_when_log_format_is_json(tmp_path):
    """With LOG_FORMAT=json every line the web entrypoint prints before gunicorn starts (migrate,
    setup_schedules) is one JSON object, so a log collector can parse all of it."""
    bin_dir = Path(sys.executable).parent
    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "REDIS_", "SECRET_KEY", "LOG_"))
    }
    environment.update(
        PATH=f"{bin_dir}:/usr/bin:/bin",
        SECRET_KEY=secrets.token_urlsafe(50),
        DEBUG="0",
        VAR_DIR=str(tmp_path / "var"),
        STATIC_ROOT=str(tmp_path),
        LOG_FORMAT="json",
        GUNICORN_BIND="127.0.0.1:0",
    )
    # gunicorn --check-config loads the settings and the app, then exits: the deploy steps ran.
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), "web", "--check-config"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            pytest.fail(f"a plain text line with LOG_FORMAT=json: {line!r}")
    messages = [entry["message"] for entry in entries]
    assert any("Applying trading.0001_initial" in message for message in messages), messages
    assert any(message.startswith("Schedules:") for message in messages), messages
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry)


# --- The lock files ------------------------------------------------------------------------------

LOCKS = {"requirements.lock": (), "requirements-dev.lock": ("dev",)}
LOCK_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==(\S+?)(\s*;[^\\]*)?\s*\\?$")


def locked(path: Path) -> dict[str, dict]:
    """name -> {version, hashes, via} for each package of a `make lock` file."""
    from packaging.utils import canonicalize_name

    packages: dict[str, dict] = {}
    current = None
    for line in path.read_text().splitlines():
        match = LOCK_LINE.match(line)
        if match:
            current = {"version": match.group(3), "hashes": 0, "via": []}
            packages[canonicalize_name(match.group(1))] = current
        elif current is not None and "--hash=sha256:" in line:
            current["hashes"] += 1
        elif current is not None and line.strip().startswith("#"):
            current["via"].append(line.strip().lstrip("#").strip())
    return packages


@pytest.mark.parametrize("name", sorted(LOCKS))
def test_the_lock_file_is_in_sync_with_pyproject(name):
    """Every dependency in pyproject.toml is locked at a version it allows, every locked package
    has a hash, and the lock names no direct dependency pyproject.toml no longer has: a
    dependency added, changed or dropped without `make lock` fails here."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in LOCKS[name]:
        wanted += project["optional-dependencies"][extra]
    packages = locked(ROOT / name)
    direct = set()
    for text in wanted:
        requirement = Requirement(text)
        key = canonicalize_name(requirement.name)
        direct.add(key)
        assert key in packages, f"{requirement.name} is not in {name}: run make lock"
        version = packages[key]["version"]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{name} has {requirement.name}=={version}, pyproject.toml asks {text}: run make lock"
        )
    from_pyproject = {
        key
        for key, package in packages.items()
        if any(via.startswith(project["name"]) or "pyproject.toml" in via for via in package["via"])
    }
    assert from_pyproject == direct, f"{name} is stale: run make lock"
    for key, package in packages.items():
        assert package["hashes"] >= 1, f"{key} has no hash in {name}"
    # Transitive dependencies are pinned too (Django brings asgiref and sqlparse).
    assert {"asgiref", "sqlparse"} <= set(packages)


def test_installs_use_the_hashed_lock_files():
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes --no-deps -r $(DEV_LOCK)" in makefile
    assert "DEV_LOCK := requirements-dev.lock" in makefile
    dockerfile = DOCKERFILE.read_text()
    assert "COPY requirements.lock" in dockerfile
    assert dockerfile.count("--require-hashes") == 2


def write_files(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    "files, limit",
    [
        # cgroup v2: "<quota> <period>" in cpu.max
        ({"cpu.max": "100000 100000\n"}, 1),
        ({"cpu.max": "150000 100000\n"}, 2),
        ({"cpu.max": "max 100000\n"}, None),
        # cgroup v1, as Docker and podman mount it in a container: cpu,cpuacct or cpu
        (
            {
                "cpu,cpuacct/cpu.cfs_quota_us": "100000\n",
                "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
            },
            1,
        ),
        ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),
        ({"cpu/cpu.cfs_quota_us": "250000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
    ],
    ids=["v2-1", "v2-1.5", "v2-max", "v1-1", "v1-0.5", "v1-2.5", "v1-unlimited", "none"],
)
def test_gunicorn_reads_the_cpu_limit_from_cgroup_v1_and_v2(monkeypatch, tmp_path, files, limit):
    conf = gunicorn_settings(monkeypatch)
    cores = 64
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    root = write_files(tmp_path, files)
    assert conf["cpu_count"](root) == (limit or cores)


def test_gunicorn_starts_three_workers_under_a_one_cpu_cgroup_v1_limit(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(4)))
    conf = gunicorn_settings(monkeypatch)
    root = write_files(
        tmp_path, {"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}
    )
    monkeypatch.setitem(conf["worker_count"].__globals__, "CGROUP_ROOT", root)
    assert conf["worker_count"]() == 3


# --- nginx: certificates, the upstream, the redirect, the network -----------------------------


def compose_config(tmp_path: Path, **environment: str) -> dict:
    """`docker compose config` of compose.yml with .env.example and ``environment``: the stack
    exactly as Docker would run it."""
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor docker-compose is installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_"))}
    env.update(environment)
    result = subprocess.run(
        [
            *command,
            "--project-directory",
            str(ROOT),
            "-f",
            str(COMPOSE),
            "--env-file",
            str(ROOT / ".env.example"),
            "config",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def bind_mounts(service: dict) -> list[tuple[str, str]]:
    """(host path, container path) of a rendered service's bind mounts, short or long syntax."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((volume["source"], volume["target"]))
        else:
            source, target = volume.split(":")[:2]
            if source.startswith(("/", ".")):
                mounts.append((source, target))
    return mounts


def networks_of(service: dict) -> dict[str, dict]:
    networks = service.get("networks") or {}
    if isinstance(networks, list):
        return {name: {} for name in networks}
    return {name: settings or {} for name, settings in networks.items()}


def nginx_upstream_hosts() -> set[str]:
    return set(re.findall(r"http://([A-Za-z0-9_.-]+):8000", NGINX_CONF.read_text())) | set(
        re.findall(r"^\s*server\s+([A-Za-z0-9_.-]+):8000", NGINX_CONF.read_text(), re.M)
    )


def test_nginx_reaches_web_over_the_backend_network_only(tmp_path):
    """The name nginx proxies to exists only on the backend network, so Docker's DNS can only
    answer it with web's backend address and nginx connects from its own backend address, the
    one web trusts for X-Forwarded-For. A service name would resolve on every network web is on
    (egress too)."""
    rendered = compose_config(tmp_path)
    services = rendered["services"]
    hosts = nginx_upstream_hosts()
    assert len(hosts) == 1, hosts
    (host,) = hosts
    assert host not in services, f"nginx proxies to the service name {host!r}: any network"
    holders = [
        (service_name, network)
        for service_name, service in services.items()
        for network, settings in networks_of(service).items()
        if host in (settings.get("aliases") or [])
    ]
    assert holders == [("web", "backend")], holders
    assert rendered["networks"]["backend"].get("internal") is True
    nginx_backend = networks_of(services["nginx"])["backend"]["ipv4_address"]
    app_env = environment_of(services["web"])
    assert app_env["FORWARDED_ALLOW_IPS"] == nginx_backend == app_env["TRUSTED_PROXIES"]


def container_files(tmp_path: Path, service: dict) -> Path:
    """The nginx container's files as compose mounts them (copies that keep symlinks as they
    are), and nginx.conf written from the template as the nginx image's entrypoint does."""
    root = tmp_path / "container"
    for source, target in bind_mounts(service):
        destination = root / target.lstrip("/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        if Path(source).is_dir():
            shutil.copytree(source, destination, symlinks=True)
        else:
            shutil.copy(source, destination)
    environment = {**NGINX_ENVIRONMENT, **environment_of(service)}
    templates = root / "etc/nginx/templates"
    output = root / environment.get("NGINX_ENVSUBST_OUTPUT_DIR", "/etc/nginx/conf.d").lstrip("/")
    for template in templates.rglob("*.template") if templates.is_dir() else []:
        target = output / template.relative_to(templates).with_suffix("")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(envsubst(template.read_text(), environment))
    return root


def certbot_layout(letsencrypt: Path, name: str) -> None:
    """/etc/letsencrypt as certbot leaves it: live/<name>/*.pem are relative symlinks into
    archive/<name>/."""
    archive = letsencrypt / "archive" / name
    archive.mkdir(parents=True)
    self_signed_certificate(archive)
    (archive / "fullchain.pem").rename(archive / "fullchain1.pem")
    (archive / "privkey.pem").rename(archive / "privkey1.pem")
    live = letsencrypt / "live" / name
    live.mkdir(parents=True)
    for kind in ("fullchain", "privkey"):
        (live / f"{kind}.pem").symlink_to(f"../../archive/{name}/{kind}1.pem")


def test_nginx_starts_with_certbot_certificates(tmp_path):
    """The documented certbot settings, mounted as compose mounts them: `nginx -t` passes (the
    relative symlinks into ../../archive resolve inside the container)."""
    nginx = nginx_binary()
    if nginx is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    letsencrypt = tmp_path / "letsencrypt"
    certbot_layout(letsencrypt, "trader.example.com")
    rendered = compose_config(
        tmp_path,
        TLS_CERT_DIR=str(letsencrypt),
        TLS_CERTIFICATE="live/trader.example.com/fullchain.pem",
        TLS_CERTIFICATE_KEY="live/trader.example.com/privkey.pem",
    )
    root = container_files(tmp_path, rendered["services"]["nginx"])
    config = root / "etc/nginx/nginx.conf"
    assert config.is_file(), "compose gives nginx no nginx.conf"
    work = tmp_path / "work"
    work.mkdir()
    path = nginx_config_for_test(
        work,
        upstream=free_port(),
        http=free_port(),
        https=free_port(),
        text=config.read_text(),
        certs=root / "etc/nginx/certs",
    )
    checked = nginx_test(nginx, work, path)
    assert checked.returncode == 0, checked.stderr
    # The plain layout (docker/certs/fullchain.pem, privkey.pem) still works with the defaults.
    plain = tmp_path / "plain"
    plain.mkdir()
    self_signed_certificate(plain)
    rendered = compose_config(tmp_path, TLS_CERT_DIR=str(plain))
    root = container_files(tmp_path / "second", rendered["services"]["nginx"])
    path = nginx_config_for_test(
        work,
        upstream=free_port(),
        http=free_port(),
        https=free_port(),
        text=(root / "etc/nginx/nginx.conf").read_text(),
        certs=root / "etc/nginx/certs",
    )
    checked = nginx_test(nginx, work, path)
    assert checked.returncode == 0, checked.stderr


def test_the_dockerfile_needs_no_frontend_from_a_registry():
    """A `# syntax=` parser directive makes BuildKit pull that frontend image before it builds:
    an offline or mirrored build fails. Directives may only stand at the very top."""
    for line in DOCKERFILE.read_text().splitlines():
        if not line.startswith("#"):
            break
        assert not re.match(r"#\s*syntax\s*=", line, re.I), line


class FakeDNS:
    """A DNS server on 127.0.0.1 (UDP) answering A and AAAA queries from ``records``
    (name -> addresses), which a test may change while it runs; unknown names get NXDOMAIN."""

    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.running = True
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def answer(self, query: bytes) -> bytes:
        labels, offset = [], 12
        while query[offset]:
            length = query[offset]
            labels.append(query[offset + 1 : offset + 1 + length].decode().lower())
            offset += 1 + length
        qtype = struct.unpack(">H", query[offset + 1 : offset + 3])[0]
        question = query[12 : offset + 5]
        name = ".".join(labels)
        if name not in self.records:
            return query[:2] + struct.pack(">HHHHH", 0x8183, 1, 0, 0, 0) + question
        family = {1: socket.AF_INET, 28: socket.AF_INET6}.get(qtype)
        answers = b""
        count = 0
        for address in self.records[name]:
            if family is not None and (":" in address) == (family == socket.AF_INET6):
                data = socket.inet_pton(family, address)
                answers += b"\xc0\x0c" + struct.pack(">HHIH", qtype, 1, 1, len(data)) + data
                count += 1
        return query[:2] + struct.pack(">HHHHH", 0x8180, 1, count, 0, 0) + question + answers

    def serve(self) -> None:
        while self.running:
            try:
                query, client = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                self.sock.sendto(self.answer(query), client)
            except (IndexError, struct.error):
                continue

    def close(self) -> None:
        self.running = False
        self.thread.join(timeout=5)
        self.sock.close()


class Backend:
    """A stand-in for one web container: answers every request 200 with its own name."""

    def __init__(self, name: str, host: str, port: int) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the http.server API)
                body = name.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        self.server = Server((host, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port_on_both_loopbacks() -> int:
    for _ in range(50):
        port = free_port()
        try:
            with socket.socket(socket.AF_INET6) as sock:
                sock.bind(("::1", port))
            return port
        except OSError:
            continue
    raise AssertionError("no port free on both 127.0.0.1 and ::1")


@pytest.mark.slow
def test_nginx_finds_web_again_after_it_moves_and_its_health_check_notices(tmp_path):
    """web is recreated at another address (here from 127.0.0.1 to ::1, both loopback, under
    the same name in a DNS server of the test's own): nginx answers from the new one within
    the resolver's `valid` time, without a reload. And nginx's health check from compose.yml
    fails while web cannot be reached through it, passes when it can."""
    nginx = nginx_binary()
    if nginx is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (the nginx image's health check uses it)")
    text = NGINX_CONF.read_text()
    resolver = re.search(r"^\s*resolver\s+(\S+)\s+valid=(\d+)s[^;]*;", text, re.M)
    assert resolver, "docker/nginx.conf has no resolver: web is looked up once, at start"
    valid = int(resolver.group(2))
    assert valid <= 30
    hosts = nginx_upstream_hosts()
    assert len(hosts) == 1, hosts
    (host,) = hosts
    dns = FakeDNS()
    port, http_port, https_port = free_port_on_both_loopbacks(), free_port(), free_port()
    # The test's DNS server, and a short `valid` so the test is quick; the rest is the real file.
    text = text.replace(resolver.group(0), f"resolver 127.0.0.1:{dns.port} valid=1s ipv6=on;")
    work = tmp_path
    (work / "certs").mkdir()
    self_signed_certificate(work / "certs")
    config = nginx_config_for_test(
        work, upstream=f"{host}:{port}", http=http_port, https=https_port, text=text
    )
    healthcheck = load(COMPOSE)["services"]["nginx"]["healthcheck"]["test"]
    assert healthcheck[0] == "CMD-SHELL"
    probe = healthcheck[1].replace("http://127.0.0.1/", f"http://127.0.0.1:{http_port}/")
    assert probe != healthcheck[1], "the health check does not request anything through nginx"

    def healthy() -> bool:
        return subprocess.run(["sh", "-c", probe], capture_output=True, timeout=30).returncode == 0

    def answered_by() -> str:
        response = httpx.get(f"http://127.0.0.1:{http_port}/health/live/", timeout=10)
        return response.text if response.status_code == 200 else str(response.status_code)

    dns.records[host] = ["127.0.0.1"]
    first = Backend("first", "127.0.0.1", port)
    second = proxy = None
    try:
        checked = nginx_test(nginx, work, config)
        assert checked.returncode == 0, checked.stderr
        proxy = subprocess.Popen(
            [nginx, "-p", str(work), "-c", str(config), "-e", str(work / "error.log")]
            + ["-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(f"http://127.0.0.1:{http_port}/health/live/")
        assert answered_by() == "first"
        assert healthy()

        # web goes away: the health check says so (nginx -t alone would still pass).
        first.close()
        assert answered_by() in ("502", "504")
        assert not healthy()

        # web comes back at another address under the same name.
        second = Backend("second", "::1", port)
        dns.records[host] = ["::1"]
        deadline = time.monotonic() + 15
        while answered_by() != "second":
            assert time.monotonic() < deadline, "nginx still answers from web's old address"
            time.sleep(0.3)
        assert healthy()
    finally:
        if proxy is not None:
            proxy.terminate()
            proxy.wait(timeout=15)
        for server in (first, second):
            if server is not None:
                try:
                    server.close()
                except OSError:
                    pass
        dns.close()
