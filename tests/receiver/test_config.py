"""Settings: validated once, a bad or missing one named in a single line."""
from __future__ import annotations

import re

import pytest

from receiver.config import ENV_SETTINGS, load_settings
from receiver.errors import ConfigError
from tests.conftest import ROOT

GOOD = """
[sources.demo]
family = "xportcn"
base_url = "https://www.xportcn.com/api"
access_key = "ak"
access_secret = "env:DEMO_SECRET"
user_id = "2100007341207"
callback_token = "a-callback-token-long-enough"
allow_ips = ["203.0.113.0/24"]
"""


@pytest.fixture
def sources(tmp_path):  # type: ignore[no-untyped-def]
    """Write a sources file and return its path."""

    def write(text: str) -> str:
        path = tmp_path / "sources.toml"
        path.write_text(text)
        return str(path)

    return write


def test_env_values_are_resolved_and_defaults_applied(sources):
    settings = load_settings({"RECEIVER_SOURCES_FILE": sources(GOOD), "DEMO_SECRET": "s3cret"})
    demo = settings.sources["demo"]
    assert demo.credentials["access_secret"] == "s3cret" and demo.credentials["portal"] == "xportcn"
    assert settings.broker_url == "redis://127.0.0.1:6379/0" and settings.database_url.startswith("sqlite:///")
    assert "s3cret" not in repr(settings) and "s3cret" not in repr(demo)


@pytest.mark.parametrize(
    ("text", "env", "named"),
    [
        (GOOD, {}, "sources.demo.access_secret: environment variable DEMO_SECRET is not set"),
        (GOOD.replace('access_key = "ak"\n', ""), {"DEMO_SECRET": "s"}, "sources.demo.access_key"),
        (GOOD.replace('"xportcn"', '"ebay"'), {"DEMO_SECRET": "s"}, "sources.demo.family"),
        (GOOD.replace("https://www.xportcn.com/api", "ftp:x"), {"DEMO_SECRET": "s"}, "sources.demo.base_url"),
        (GOOD.replace("a-callback-token-long-enough", "short"), {"DEMO_SECRET": "s"}, "sources.demo.callback_token"),
        (GOOD.replace("203.0.113.0/24", "not-an-ip"), {"DEMO_SECRET": "s"}, "sources.demo.allow_ips"),
        (GOOD + 'portal = "mars"\n', {"DEMO_SECRET": "s"}, "sources.demo.portal"),
        (GOOD + 'colour = "red"\n', {"DEMO_SECRET": "s"}, "sources.demo.colour"),
        ("not toml [", {}, "RECEIVER_SOURCES_FILE"),
        ("", {}, "RECEIVER_SOURCES_FILE"),
        (GOOD, {"DEMO_SECRET": "s", "RECEIVER_API_TOKEN": "short"}, "RECEIVER_API_TOKEN"),
        (GOOD, {"DEMO_SECRET": "s", "RECEIVER_TIMESTAMP_WINDOW": "soon"}, "RECEIVER_TIMESTAMP_WINDOW"),
        (GOOD, {"DEMO_SECRET": "s", "RECEIVER_BROKER_URL": "amqp://guest@localhost//"}, "RECEIVER_BROKER_URL"),
        (GOOD, {"DEMO_SECRET": "s", "RECEIVER_DATABASE_URL": "postgres://u@h/db"}, "RECEIVER_DATABASE_URL"),
        (GOOD, {"DEMO_SECRET": "s", "RECEIVER_DATABASE_URL": "not a url"}, "RECEIVER_DATABASE_URL"),
        (GOOD, {"DEMO_SECRET": "s", "RECEIVER_DATABASE_URL": "mysql://u@h/db"}, "RECEIVER_DATABASE_URL"),
        (GOOD.replace("[sources.demo]", "[sources.\"a/b\"]"), {"DEMO_SECRET": "s"}, "sources.a/b"),
    ],
)
def test_bad_setting_is_named(sources, text, env, named):
    with pytest.raises(ConfigError) as err:
        load_settings({"RECEIVER_SOURCES_FILE": sources(text), **env})
    assert named in str(err.value) and "\n" not in str(err.value)


def test_missing_sources_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="RECEIVER_SOURCES_FILE: .* not found"):
        load_settings({"RECEIVER_SOURCES_FILE": str(tmp_path / "nope.toml")})


def test_each_variable_sets_its_setting_and_empty_means_the_default(sources):
    settings = load_settings({
        "RECEIVER_SOURCES_FILE": sources(GOOD), "DEMO_SECRET": "s", "RECEIVER_TIMESTAMP_WINDOW": "60",
        "RECEIVER_ALLOWED_HOSTS": "a.example, b.example,", "RECEIVER_METRICS_REQUIRE_TOKEN": "true",
        "PROMETHEUS_MULTIPROC_DIR": "/tmp/prom", "RECEIVER_COALESCE_WINDOW": "0.5", "RECEIVER_NAMESPACE": "",
    })
    assert settings.timestamp_window == 60 and settings.coalesce_window == 0.5 and settings.metrics_require_token is True
    assert settings.allowed_hosts == ("a.example", "b.example") and settings.metrics_multiproc_dir == "/tmp/prom"
    assert settings.namespace == "receiver"


def test_every_variable_the_readme_names_is_a_setting():
    readme = (ROOT / "README.md").read_text()
    assert set(re.findall(r"\bRECEIVER_[A-Z_]+\b", readme)) - {"RECEIVER_TEST_DATABASE_URL", "RECEIVER_TEST_BROKER_URL"} <= set(ENV_SETTINGS)
