"""compose.yaml, the Dockerfile and .dockerignore, checked statically (no Docker is needed).

compose.yaml is validated against the Compose Specification's JSON schema, vendored as
tests/data/compose-spec.json: from github.com/compose-spec/compose-spec, path
schema/compose-spec.json, at commit 170098ba07d9f53c383a41bfd4c5166b0a4529a6 (2026-06-23; the
file was last changed in a08f8d51631b7127ddac3d2c65537db429d0f1d0, 2025-10-28; git blob
5db97d0fbbb8e7fbedea0bb5fdb3fe0e93b0e4b1), unchanged. It declares JSON Schema draft 7.

Then what matters for lumu: the services' commands are parsed by lumu's own command line as it
would parse them in the container (the compose environment applied), the bootstrap they get is
the listener Kafka advertises on the compose network, and the Dockerfile's healthcheck command
is run against lumu's real HTTP endpoint: 0 while /healthz is 200, 1 while it is 503 or nothing
listens.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema  # type: ignore[import-untyped]
import pytest
import typer.main
import yaml  # type: ignore[import-untyped]

from lumu_cli.cli import app
from lumu_cli.server import Endpoint
from lumu_cli.tracker import Stats

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "tests" / "data" / "compose-spec.json").read_text())
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
README = (ROOT / "README.md").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PORT = 8000  # lumu serve's port in the image: EXPOSE, CMD, the healthcheck, compose


# ---------------------------------------------------------------- the Compose schema


def schema_errors(document: object) -> list[str]:
    validator = jsonschema.Draft7Validator(SCHEMA)
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def test_the_vendored_schema_is_a_draft_7_schema() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft-07/schema"
    jsonschema.Draft7Validator.check_schema(SCHEMA)


def test_compose_yaml_is_valid_against_the_compose_specification() -> None:
    assert schema_errors(COMPOSE) == []


def broken(change: str) -> dict[str, Any]:
    """compose.yaml with one mistake, as someone might make it."""
    document = copy.deepcopy(COMPOSE)
    lumu = document["services"]["lumu"]
    if change == "misspelt key":
        lumu["comand"] = lumu.pop("command")
    elif change == "unknown condition":
        lumu["depends_on"]["kafka"]["condition"] = "service_healty"
    elif change == "depends_on without a condition":
        lumu["depends_on"]["kafka"] = {"required": True}
    elif change == "healthcheck test as a number":
        lumu["healthcheck"]["test"] = 200
    elif change == "healthcheck with an unknown key":
        lumu["healthcheck"]["url"] = "/healthz"
    elif change == "profiles as a string":
        document["services"]["produce"]["profiles"] = "demo"
    elif change == "environment as a string":
        lumu["environment"] = "LUMU_BOOTSTRAP_SERVERS=kafka:19092"
    elif change == "no services key":
        document["service"] = document.pop("services")
    else:  # pragma: no cover
        raise AssertionError(change)
    return document


@pytest.mark.parametrize(
    "change",
    [
        "misspelt key",
        "unknown condition",
        "depends_on without a condition",
        "healthcheck test as a number",
        "healthcheck with an unknown key",
        "profiles as a string",
        "environment as a string",
        "no services key",
    ],
)
def test_the_schema_check_fails_on_a_broken_compose_file(change: str) -> None:
    assert schema_errors(broken(change))


# ---------------------------------------------------------------- the Dockerfile


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, (KEYWORD, arguments), continuation lines joined and
    comments dropped, as Docker reads them."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue  # also inside a continued instruction, as Docker does
        if stripped.endswith("\\"):
            current += stripped[:-1].strip() + " "
            continue
        keyword, _, rest = (current + stripped).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        current = ""
    assert not current, "the Dockerfile ends inside a continued instruction"
    return instructions


DOCKERFILE = dockerfile()


def arguments(keyword: str) -> list[str]:
    return [rest for name, rest in DOCKERFILE if name == keyword]


def exec_form(keyword: str) -> list[str]:
    """The JSON form of the last KEYWORD (the one in force)."""
    *_, rest = arguments(keyword)
    value = json.loads(rest)
    assert isinstance(value, list)
    assert all(isinstance(item, str) for item in value)
    return value


def healthcheck() -> tuple[str, list[str]]:
    """The HEALTHCHECK's options and its command, in the JSON form."""
    (rest,) = arguments("HEALTHCHECK")
    match = re.fullmatch(r"((?:--[a-z-]+=\S+\s+)*)CMD\s+(\[.*\])", rest)
    assert match, rest
    command = json.loads(match[2])
    assert isinstance(command, list)
    return match[1], command


NATIVE = "lumu_cli/native"


def readme_install_commands() -> set[str]:
    """The commands the README gives users to install lumu with pip (not the editable install
    of the development tools): lumu, and its native checker."""
    inline = re.findall(r"`(pip install [^`]+)`", README)
    in_blocks = re.findall(r"^\s*(?:\$ )?(pip install [^#\n]+?)\s*(?:#.*)?$", README, re.M)
    return {c for c in inline + in_blocks if "-e" not in c.split() and "[dev]" not in c}


def test_the_image_is_a_slim_python_pinned_by_tag() -> None:
    images = arguments("FROM")
    assert [image.split()[2:] for image in images] == [["native"], []]  # a build stage, the image
    for image in images:
        match = re.fullmatch(
            r"python:3\.(\d+)(?:\.\d+)?-slim(?:-[a-z]+)?(?:@sha256:[0-9a-f]{64})?",
            image.split()[0],
        )
        assert match, image
        minimum = re.fullmatch(r">=3\.(\d+)", PYPROJECT["project"]["requires-python"])
        assert minimum
        assert int(match[1]) >= int(minimum[1])
    assert images[0].split()[0] == images[1], "the wheel is built for the image's Python"


def test_it_installs_lumu_and_its_native_checker_as_the_readme_says() -> None:
    assert readme_install_commands() == {"pip install .", f"pip install ./{NATIVE}"}
    build, install = [rest for rest in arguments("RUN") if "pip " in rest]
    # the native checker's wheel, built from its crate, where cargo is
    assert f"pip wheel --no-deps --wheel-dir /wheels ./{NATIVE}" in build
    assert "apt-get install -y --no-install-recommends cargo" in arguments("RUN")[0]
    # lumu itself from the build context, then that wheel, which needs no Rust
    assert install == "pip install . && pip install /wheels/*.whl && rm -r /wheels"


def test_it_runs_as_a_user_that_is_not_root() -> None:
    *_, user = arguments("USER")
    assert user.split(":")[0] not in {"root", "0"}
    keywords = [name for name, _ in DOCKERFILE]
    last_user = len(keywords) - 1 - keywords[::-1].index("USER")
    assert "RUN" not in keywords[last_user:], "nothing runs as root after the USER"


def test_lumu_is_the_entrypoint_and_serve_the_default_command() -> None:
    assert exec_form("ENTRYPOINT") == ["lumu"]
    assert exec_form("CMD") == ["serve", f":{PORT}"]
    assert arguments("EXPOSE") == [str(PORT)]


def test_the_healthcheck_asks_healthz_with_python() -> None:
    options, command = healthcheck()
    assert "--start-period=" in options
    assert command[:2] == ["python", "-c"]  # slim has no curl
    assert len(command) == 3
    assert f"http://127.0.0.1:{PORT}/healthz" in command[2]
    compile(command[2], "<HEALTHCHECK>", "exec")


def run_healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    """The Dockerfile's healthcheck command as Docker runs it, on another port."""
    _, command = healthcheck()
    code = command[2].replace(f"127.0.0.1:{PORT}/", f"127.0.0.1:{port}/")
    assert code != command[2]
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)


def test_the_healthcheck_passes_while_lumu_serve_is_healthy_and_fails_otherwise() -> None:
    """Run against lumu's own endpoint (the one `lumu serve` runs) over a stats snapshot."""
    stats = Stats(
        unique_ips=0,
        messages=0,
        invalid={},
        rate=0.0,
        elapsed=0.0,
        updated_at="2026-12-05T00:00:00.000Z",
    )
    served = Endpoint("127.0.0.1:0", lambda: stats)
    try:
        port = urlsplit(served.url).port
        assert port is not None
        assert run_healthcheck(port).returncode == 0
        stats = replace(stats, healthy=False)  # no broker answers: 503
        assert run_healthcheck(port).returncode == 1
    finally:
        served.close()
    assert run_healthcheck(port).returncode == 1  # nothing listens


# ---------------------------------------------------------------- .dockerignore


def ignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` out of the build context: the last pattern that
    matches the path or one of its parent directories decides, `!` lets back in; `*` and `?`
    stay within a path segment, `**` spans any number of them (Docker's rules)."""
    out = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        keep = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        regex = ""
        for part in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
            regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
                part, re.escape(part)
            )
        pieces = path.split("/")
        prefixes = ["/".join(pieces[: i + 1]) for i in range(len(pieces))]
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            out = not keep
    return out


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        "mutants/lumu_cli/events.py",
        "bench/.data/topic.json",
        ".git/HEAD",
        ".mypy_cache/3.11/cache.db",
        ".ruff_cache/CACHEDIR.TAG",
        ".pytest_cache/README.md",
        ".hypothesis/examples/x",
        "lumu_cli/__pycache__/events.cpython-311.pyc",
        "lumu_cli/cli/__pycache__/kafka.cpython-311.pyc",
        "tests/test_compose.py",
        "compose.yaml",
        "lumu_cli/native/target/release/liblumu_native.so",
    ],
)
def test_the_build_context_leaves_out(path: str) -> None:
    assert ignored(path)


def test_the_build_context_holds_what_pip_install_reads() -> None:
    wheel = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = ["pyproject.toml", PYPROJECT["project"]["readme"]]
    sources = [
        path.relative_to(ROOT).as_posix()
        for package in wheel["packages"]
        for path in (ROOT / package).rglob("*.py")
    ]
    assert sources
    copied = [
        part for rest in arguments("COPY") if "--from" not in rest for part in rest.split()[:-1]
    ]
    assert set(copied) == {
        *needed,
        *(f"{package}/" for package in wheel["packages"]),
        f"{NATIVE}/",  # in the build stage
    }
    for path in [*needed, *sources]:
        assert not ignored(path), path


# ---------------------------------------------------------------- compose.yaml


def parsed(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The service's command parsed by lumu's own command line, with the service's environment
    and no other LUMU_ variable, as in the container."""
    for name in [name for name in os.environ if name.startswith("LUMU_")]:
        monkeypatch.delenv(name)
    for name, value in service.get("environment", {}).items():
        monkeypatch.setenv(name, str(value))
    name, *args = service["command"]
    group: Any = typer.main.get_command(app)  # a click Group (Typer's own click)
    context: Any = group.commands[name].make_context(f"lumu {name}", list(args))
    return context


def docker_listener() -> str:
    """host:port of the listener Kafka advertises to the compose network (by service name)."""
    env = SERVICES["kafka"]["environment"]
    advertised: dict[str, str] = dict(
        item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    )
    (name,) = [name for name, address in advertised.items() if address.startswith("kafka:")]
    port = advertised[name].rsplit(":", 1)[1]
    assert f"{name}://:{port}" in env["KAFKA_LISTENERS"].split(",")
    assert f"{name}:PLAINTEXT" in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    return advertised[name]


def test_kafka_still_answers_the_host_on_localhost_9092() -> None:
    kafka = SERVICES["kafka"]
    assert kafka["ports"] == ["127.0.0.1:9092:9092"]
    assert "PLAINTEXT://localhost:9092" in kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert "PLAINTEXT://:9092" in kafka["environment"]["KAFKA_LISTENERS"]
    assert kafka["healthcheck"]["test"]  # what service_healthy waits for
    assert "profiles" not in kafka


def test_kafka_advertises_a_listener_to_the_compose_network() -> None:
    assert docker_listener() == "kafka:19092"


def test_lumu_is_built_from_the_dockerfile_in_the_repo_root() -> None:
    lumu = SERVICES["lumu"]
    build = lumu["build"]
    if isinstance(build, dict):
        assert build.get("context", ".") == "."
        assert build.get("dockerfile", "Dockerfile") == "Dockerfile"
    else:
        assert build == "."
    assert (ROOT / "Dockerfile").is_file()
    assert "image" not in lumu  # never pulled: a registry's "lumu" is not this one
    assert "profiles" not in lumu  # started by a plain docker compose up


def test_lumu_serves_port_8000_on_the_host_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    lumu = SERVICES["lumu"]
    assert lumu["command"][:2] == ["serve", f":{PORT}"]
    context = parsed(lumu, monkeypatch)
    assert context.params["address"] == f":{PORT}"
    assert lumu["ports"] == [f"127.0.0.1:{PORT}:{PORT}"]
    assert lumu["restart"] == "unless-stopped"


@pytest.mark.parametrize("name", ["lumu", "produce"])
def test_each_lumu_service_reaches_kafka_on_the_compose_network(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = SERVICES[name]
    assert service["build"] == SERVICES["lumu"]["build"]
    assert service["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    context = parsed(service, monkeypatch)
    assert context.params["bootstrap"] == docker_listener()
    assert context.params["topic"] == "device-events"
    assert service["init"] is True  # SIGTERM reaches lumu: a clean stop


def test_lumu_has_the_dockerfile_healthcheck_on_healthz() -> None:
    check = SERVICES["lumu"]["healthcheck"]
    _, command = healthcheck()
    assert check["test"] == ["CMD", *command]
    assert "/healthz" in check["test"][3]
    assert "disable" not in check


def test_produce_runs_only_under_the_demo_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    produce = SERVICES["produce"]
    assert produce["profiles"] == ["demo"]
    context = parsed(produce, monkeypatch)
    assert context.params["rate"] == 500
    assert context.params["count"] is None
    assert context.params["duration"] is None
    assert produce["healthcheck"] == {"disable": True}  # it serves no /healthz
    assert "ports" not in produce


def test_every_dependency_is_a_service_of_the_file() -> None:
    for service in SERVICES.values():
        assert set(service.get("depends_on", {})) <= set(SERVICES)
