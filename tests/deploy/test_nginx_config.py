"""deploy/nginx/receiver.conf and its uses (Compose, the Kubernetes Ingress) agree with the app."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from receiver.config import Settings
from tests.faults.test_slow_clients import NGINX, TEMPLATE, nginx_config

ROOT = Path(__file__).resolve().parents[2]
SIZES = {"k": 1024, "m": 1024 * 1024}


def directive(name: str) -> str:
    [value] = re.findall(rf"^\s*{name}\s+([^;]+);", TEMPLATE.read_text(), re.MULTILINE)
    return value


def test_nginx_refuses_what_the_app_would_refuse_and_waits_on_clients_for_a_bounded_time():
    size = directive("client_max_body_size")
    assert int(size[:-1]) * SIZES[size[-1]] == Settings.max_body_bytes  # RECEIVER_MAX_BODY_BYTES's default
    assert directive("proxy_request_buffering") == "on"
    assert directive("client_body_timeout") == directive("client_header_timeout") == "10s"
    assert "$proxy_add_x_forwarded_for" in directive("proxy_set_header X-Forwarded-For")
    # The access log's format names the path without its query (the callback token is in it).
    log_format = TEMPLATE.read_text().split("log_format receiver_masked", 1)[1].split(";", 1)[0]
    assert "$uri" in log_format and "$request " not in log_format and "$request_uri" not in log_format and "$args" not in log_format


def _block(text: str, start: str) -> str:
    """The lines of a YAML mapping entry, up to the next entry as indented as `start` (no YAML parser here)."""
    indent = len(start) - len(start.lstrip())
    lines = text[text.index(start + "\n"):].splitlines()
    end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() and len(line) - len(line.lstrip()) <= indent), len(lines))
    return "\n".join(lines[:end])


def test_compose_puts_nginx_from_that_file_in_front_of_an_unpublished_gunicorn():
    compose = (ROOT / "deploy" / "docker-compose.yml").read_text()
    nginx, web = _block(compose, "  nginx:"), _block(compose, "  web:")
    assert "- ./nginx/receiver.conf:/etc/nginx/templates/receiver.conf.template:ro" in nginx
    for name in set(re.findall(r"\$\{(RECEIVER_\w+)\}", TEMPLATE.read_text())):
        assert f"      {name}: " in nginx  # every placeholder of the template is filled in
    assert 'RECEIVER_UPSTREAM: "web:8000"' in nginx and '- "8000:8000"' in nginx
    assert "ports:" not in web and 'RECEIVER_TRUSTED_PROXIES: "1"' in web


def test_the_kubernetes_ingress_buffers_requests_with_the_same_limit():
    ingress = (ROOT / "deploy" / "k8s" / "ingress.yaml").read_text()
    assert 'nginx.ingress.kubernetes.io/proxy-request-buffering: "on"' in ingress
    assert f'nginx.ingress.kubernetes.io/proxy-body-size: "{directive("client_max_body_size")}"' in ingress
    patch = (ROOT / "deploy" / "k8s" / "ingress-nginx-patch.yaml").read_text()
    seconds = directive("client_body_timeout").rstrip("s")
    assert f'client-body-timeout: "{seconds}"' in patch and f'client-header-timeout: "{seconds}"' in patch
    log_format = _block(patch, "  log-format-upstream: >-")
    assert "$request " not in log_format and "$uri" in log_format


def test_nginx_accepts_the_file(tmp_path):
    if NGINX is None:
        pytest.skip("no nginx binary (Debian: apt-get install nginx; .ci/run installs it)")
    conf = nginx_config(tmp_path, 8080, "127.0.0.1:8000")
    check = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
