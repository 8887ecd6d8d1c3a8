"""The container files, checked without a Docker engine (there is none where this is built).

compose.yaml is validated against the Compose Specification's JSON schema (the copy that
check-jsonschema vendors); every command the Dockerfile and compose.yaml run, health checks
included, is parsed by the real `mailroom` CLI; every variable they set is a real setting
(or one of the few documented non-settings); the Dockerfile's structure is read with a
small instruction parser. Nothing here runs `docker`.
"""

from __future__ import annotations

import copy
import fnmatch
import inspect
import json
import re
import shlex
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import typer
import typer.main
import yaml
from typer.core import TyperGroup
from typer.testing import CliRunner

from mailroom.cli import app
from mailroom.settings import Settings, load_settings
from mailroom.worker.runner import DeliveryWorker

ROOT = Path(__file__).parents[2]
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
README = ROOT / "README.md"
ENV_EXAMPLE = ROOT / ".env.example"

SETTINGS = {name.upper() for name in Settings.model_fields}
# Variables a Mailroom container may set that are not settings:
# PATH (the virtual environment), PYTHONUNBUFFERED and PYTHONDONTWRITEBYTECODE (Python's own),
# PORT (read by `mailroom health` to find the API).
NOT_SETTINGS = {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PORT"}

RUNTIME_IMAGE = "python:3.11-slim-bookworm"
VENV = "/app/.venv"


# -- the `mailroom` CLI ------------------------------------------------------------------


def check_mailroom_command(argv: list[str]) -> None:
    """`mailroom *argv` names a real command, whose --help works, and its arguments parse."""
    assert argv, "an empty command"
    command = typer.main.get_command(app)
    path: list[str] = []
    rest = list(argv)
    while isinstance(command, TyperGroup) and rest and not rest[0].startswith("-"):
        sub = command.commands.get(rest[0])
        assert sub is not None, f"`mailroom {' '.join(argv)}`: no command {rest[0]!r}"
        command = sub
        path.append(rest.pop(0))
    assert not isinstance(command, TyperGroup), f"`mailroom {' '.join(argv)}` names a group"

    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output

    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    for token in rest:
        if token.startswith("--"):
            name = token.partition("=")[0]
            assert name in known, f"`mailroom {' '.join(path)}` has no option {name}"
    # Parsing (types, ranges, missing values) without running the command.
    command.make_context(f"mailroom {' '.join(path)}", rest)


def test_the_command_check_refuses_what_the_cli_would() -> None:
    with pytest.raises(AssertionError, match="no command"):
        check_mailroom_command(["serve"])
    with pytest.raises(AssertionError, match="no option --threads"):
        check_mailroom_command(["worker", "--threads", "4"])
    with pytest.raises(typer.BadParameter):
        check_mailroom_command(["api", "--port", "http"])
    check_mailroom_command(["keys", "create", "--name", "me"])


# -- Dockerfile --------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined; comments and blank lines dropped."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # also inside a continued instruction, as Docker does
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        keyword, _, args = " ".join(pending).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        pending = []
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return instructions


def _substitute(value: str, variables: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in variables, f"${name} is not a global ARG with a default"
        return variables[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", replace, value)


def parse_stages(instructions: list[Instruction]) -> list[Stage]:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            tokens = [t for t in instruction.args.split() if not t.startswith("--")]
            image = _substitute(tokens[0], global_args)
            name = tokens[2] if len(tokens) == 3 and tokens[1].upper() == "AS" else None
            stages.append(Stage(image, name))
        elif not stages:
            assert instruction.keyword == "ARG", f"{instruction.keyword} before the first FROM"
            arg_name, _, default = instruction.args.partition("=")
            global_args[arg_name] = default
        else:
            stages[-1].instructions.append(instruction)
    return stages


def exec_form(instruction: Instruction) -> list[str]:
    """The JSON array of an exec-form instruction (fails on the shell form)."""
    try:
        value = json.loads(instruction.args)
    except json.JSONDecodeError:
        pytest.fail(f"line {instruction.line}: {instruction.keyword} is not in exec (JSON) form")
    assert isinstance(value, list)
    assert all(isinstance(item, str) for item in value)
    return value


def env_names(instruction: Instruction) -> set[str]:
    tokens = shlex.split(instruction.args)
    if "=" not in tokens[0]:  # the legacy `ENV NAME value` form
        return {tokens[0]}
    return {token.partition("=")[0] for token in tokens}


def env_values(instruction: Instruction) -> dict[str, str]:
    return dict(token.split("=", 1) for token in shlex.split(instruction.args))


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_stages(parse_dockerfile(DOCKERFILE.read_text()))


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


@pytest.fixture(scope="module")
def builder(stages: list[Stage]) -> Stage:
    (stage,) = [s for s in stages if s.name == "builder"]
    return stage


def test_the_parser_joins_continued_lines_and_drops_comments() -> None:
    text = 'FROM a AS b\n# note\nRUN one \\\n    # inside\n    two\nCMD ["x"]\n'
    assert parse_dockerfile(text) == [
        Instruction("FROM", "a AS b", 1),
        Instruction("RUN", "one two", 3),
        Instruction("CMD", '["x"]', 6),
    ]


def test_the_image_is_built_in_stages(stages: list[Stage], builder: Stage, final: Stage) -> None:
    assert len(stages) >= 2
    assert final.image == RUNTIME_IMAGE
    # The environment's python is a link into the base image: both stages share it.
    assert builder.image == final.image


def test_dependencies_are_installed_from_the_lock_file_before_the_source(
    builder: Stage,
) -> None:
    steps = builder.instructions
    syncs = [i for i, s in enumerate(steps) if s.keyword == "RUN" and "uv sync" in s.args]
    assert len(syncs) == 2, "one sync for the dependencies, one for the project"
    for index in syncs:
        assert "--frozen" in steps[index].args and "--no-dev" in steps[index].args
    deps, project = syncs
    assert "--no-install-project" in steps[deps].args
    copied_before = " ".join(s.args for s in steps[:deps] if s.keyword == "COPY")
    assert "uv.lock" in copied_before and "pyproject.toml" in copied_before
    assert "src" not in copied_before.split()
    copied_between = [s.args.split() for s in steps[deps:project] if s.keyword == "COPY"]
    assert any(args[0] == "src" for args in copied_between)
    # Installed as a package, so that the runtime needs the environment alone.
    assert "--no-editable" in steps[project].args
    env: dict[str, str] = {}
    for instruction in builder.all("ENV"):
        env.update(env_values(instruction))
    assert env.get("UV_PROJECT_ENVIRONMENT") == VENV
    assert env.get("UV_PYTHON_DOWNLOADS") == "never", "a downloaded Python is not in the runtime"


def test_the_runtime_holds_the_environment_and_runs_as_a_non_root_user(final: Stage) -> None:
    copies = [i.args.split() for i in final.all("COPY")]
    assert copies == [["--from=builder", VENV, VENV]]
    assert not final.all("ADD")
    workdir = final.last("WORKDIR")
    assert workdir is not None and workdir.args == "/app"
    user = final.last("USER")
    assert user is not None, "the runtime stage must not run as root"
    name = user.args.partition(":")[0]
    assert name not in ("root", "0")
    assert name == "10001"
    assert final.instructions.index(user) > max(
        final.instructions.index(i) for i in final.all("RUN")
    )
    assert any("--uid 10001" in i.args for i in final.all("RUN"))


def test_the_runtime_environment(final: Stage) -> None:
    env: dict[str, str] = {}
    for instruction in final.all("ENV"):
        env.update(env_values(instruction))
    assert env["PATH"].startswith(f"{VENV}/bin:")
    assert env["PYTHONUNBUFFERED"] == "1"
    names = set().union(*(env_names(i) for i in final.all("ENV")))
    assert names <= SETTINGS | NOT_SETTINGS, names - SETTINGS - NOT_SETTINGS
    exposed = final.last("EXPOSE")
    assert exposed is not None and exposed.args.split() == ["8000"]


def test_the_entrypoint_is_mailroom_and_the_default_command_serves_the_api(
    final: Stage,
) -> None:
    entrypoint, cmd = final.last("ENTRYPOINT"), final.last("CMD")
    assert entrypoint is not None and cmd is not None
    # Exec form, no shell: SIGTERM reaches Python itself.
    assert exec_form(entrypoint) == ["mailroom"]
    command = exec_form(cmd)
    assert command[0] == "api"
    assert command[command.index("--port") + 1] == "8000"
    assert command[command.index("--host") + 1] == "0.0.0.0"
    check_mailroom_command(command)
    # `docker run IMAGE worker` replaces CMD only.
    check_mailroom_command(["worker"])
    assert not final.all("SHELL")


def test_the_stop_signal_is_sigterm(final: Stage) -> None:
    signal = final.last("STOPSIGNAL")
    assert signal is None or signal.args in ("SIGTERM", "15")


def test_the_health_check_is_a_mailroom_command(final: Stage) -> None:
    healthcheck = final.last("HEALTHCHECK")
    assert healthcheck is not None
    options, _, command = healthcheck.args.partition("CMD ")
    assert all(option.startswith("--") for option in options.split())
    argv = exec_form(Instruction("CMD", command, healthcheck.line))
    assert argv[:2] == ["mailroom", "health"]
    # Without --api/--worker: the same image serves both roles.
    assert "--api" not in argv and "--worker" not in argv
    check_mailroom_command(argv[1:])


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps `path` out of the context (simplified: last match wins)."""
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        bare = pattern.lstrip("!").strip("/").removeprefix("**/")
        if fnmatch.fnmatch(path, bare) or fnmatch.fnmatch(Path(path).name, bare):
            ignored = not negated
    return ignored


def test_dockerignore_keeps_secrets_and_clutter_out_but_not_what_the_image_needs(
    stages: list[Stage],
) -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for kept_out in (".venv", ".git", ".env", ".mailroom-dev-key", "postman/node_modules"):
        assert _ignored(kept_out, patterns), kept_out
    assert _ignored("src/mailroom/__pycache__", patterns)
    assert _ignored(".mypy_cache", patterns) and _ignored(".pytest_cache", patterns)
    for stage in stages:
        for instruction in stage.all("COPY"):
            if instruction.args.startswith("--from"):
                continue
            *sources, _ = instruction.args.split()
            for source in sources:
                assert (ROOT / source).exists(), source
                assert not _ignored(source, patterns), f"{source} is excluded by .dockerignore"


# -- compose.yaml ------------------------------------------------------------------------


def compose_schema() -> dict[str, Any]:
    vendored = files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema: dict[str, Any] = json.loads(vendored.read_text(encoding="utf-8"))
    return schema


def schema_errors(document: dict[str, Any]) -> list[str]:
    schema = compose_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    return sorted(
        f"{'/'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(document)
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose["services"]
    return services


@pytest.fixture(scope="module")
def mailroom_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The services built from this repository."""
    return {name: s for name, s in services.items() if "build" in s}


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {name: "" if value is None else str(value) for name, value in env.items()}


def seconds(duration: str) -> float:
    """A Compose duration such as 40s, 1m30s or 1500ms."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(number) * units[unit] for number, unit in parts)


def test_compose_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    assert schema_errors(compose) == []


def test_the_schema_check_catches_a_mistake(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["worker"]["stop_grace_priod"] = broken["services"]["worker"].pop(
        "stop_grace_period"
    )
    broken["services"]["api"]["ports"] = "8000:8000"
    errors = schema_errors(broken)
    assert any("stop_grace_priod" in error for error in errors), errors
    assert any(error.startswith("services/api/ports") for error in errors), errors


def test_the_services(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {"postgres", "redis", "migrate", "api", "worker", "mailpit"}
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert services["mailpit"]["image"].startswith("axllent/mailpit")
    assert "8025:8025" in services["mailpit"]["ports"]


def test_mailroom_services_run_real_commands(
    mailroom_services: dict[str, dict[str, Any]],
) -> None:
    assert set(mailroom_services) == {"migrate", "api", "worker"}
    for name, service in mailroom_services.items():
        assert "entrypoint" not in service, "the image's entrypoint is `mailroom`"
        command = service["command"]
        assert isinstance(command, list), f"{name}: command in exec (list) form"
        assert command[0] == name, f"the {name} service runs `mailroom {command[0]}`"
        check_mailroom_command(command)
        if "healthcheck" in service:
            test = service["healthcheck"]["test"]
            assert test[:3] == ["CMD", "mailroom", "health"], f"{name}: {test}"
            check_mailroom_command(test[2:])


def test_health_checks_match_each_role(services: dict[str, dict[str, Any]]) -> None:
    api, worker = services["api"], services["worker"]
    assert "--worker" in worker["healthcheck"]["test"]
    api_check = api["healthcheck"]["test"]
    assert "--worker" not in api_check
    port = api["command"][api["command"].index("--port") + 1]
    assert api_check[api_check.index("--port") + 1] == port
    assert f"{port}:{port}" in api["ports"]
    assert api["command"][api["command"].index("--host") + 1] == "0.0.0.0"
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"][0] == "CMD"


def test_start_up_order(services: dict[str, dict[str, Any]]) -> None:
    def conditions(name: str) -> dict[str, str]:
        return {dep: value["condition"] for dep, value in services[name]["depends_on"].items()}

    assert conditions("migrate") == {"postgres": "service_healthy"}
    assert services["migrate"]["restart"] == "no"
    for name in ("api", "worker"):
        assert conditions(name)["migrate"] == "service_completed_successfully"
        assert conditions(name)["redis"] == "service_healthy"
    for service in services.values():
        for dependency, value in service.get("depends_on", {}).items():
            if value["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], dependency


def test_redis_keeps_jobs(services: dict[str, dict[str, Any]]) -> None:
    command = " ".join(services["redis"]["command"])
    assert "--maxmemory-policy noeviction" in command
    assert "--appendonly yes" in command
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])


def test_the_worker_scales_and_has_time_to_drain(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert worker.get("stop_signal", "SIGTERM") == "SIGTERM"
    drain = inspect.signature(DeliveryWorker).parameters["grace_period"].default
    assert isinstance(drain, float)
    # The drain, then interrupting and recording what is left, before Docker's SIGKILL.
    assert seconds(worker["stop_grace_period"]) >= drain + 5


def test_mailroom_services_set_only_known_variables(
    mailroom_services: dict[str, dict[str, Any]],
) -> None:
    for name, service in mailroom_services.items():
        names = set(environment(service))
        assert names <= SETTINGS | NOT_SETTINGS, f"{name}: {names - SETTINGS - NOT_SETTINGS}"
        assert service["env_file"] == [{"path": ".env", "required": False}], name


def test_the_configuration_is_valid_and_points_at_the_compose_services(
    services: dict[str, dict[str, Any]],
    mailroom_services: dict[str, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    postgres = services["postgres"]["environment"]
    for service in mailroom_services.values():
        values = {name.lower(): value for name, value in environment(service).items()}
        # As the container sees it with no .env, and with .env copied from .env.example
        # (the environment block wins over the file).
        for env_file in (None, ENV_EXAMPLE):
            settings = load_settings(_env_file=env_file, **values)
            database = urlsplit(settings.database_url)
            assert database.hostname in services
            assert database.password == postgres["POSTGRES_PASSWORD"]
            assert database.path == f"/{postgres['POSTGRES_DB']}"
            assert urlsplit(settings.redis_url).hostname == "redis"
            assert settings.smtp_host == "mailpit"
            assert settings.effective_smtp_port == 1025
            assert settings.smtp_security == "none"
            assert settings.smtp_username is None and settings.smtp_password is None
            assert settings.smtp_oauth2_token_url is None and settings.smtp_ca_file is None


# -- README ------------------------------------------------------------------------------


def test_the_readme_s_docker_commands_are_real(
    services: dict[str, dict[str, Any]],
) -> None:
    text = README.read_text()
    section = text[text.index("## Running with Docker") :]
    section = section[: section.index("\n## ", 1)]
    found = re.findall(r"docker compose (?:exec|run --rm) (\S+) mailroom ([^\n`#]+)", section)
    assert found, "the section shows how to run a mailroom command in the stack"
    for service, arguments in found:
        assert service in services
        check_mailroom_command(shlex.split(arguments))
    for scaled in re.findall(r"--scale (\w+)=\d+", section):
        assert scaled in services
