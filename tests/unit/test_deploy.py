"""docker-compose.yml cannot be started here (no Docker engine), so it is checked statically:
its shape, healthchecks, that every command exists in the installed package, and that no secret
is baked into the image or the compose file."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from models.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
EXPECTED = {
    "postgres", "sftp", "migrate", "code-location", "dagster-webserver", "dagster-daemon", "api",
}  # fmt: skip
LONG_RUNNING = EXPECTED - {"migrate"}
BIN = Path(sys.executable).parent


def test_services_and_images() -> None:
    assert set(SERVICES) == EXPECTED
    assert SERVICES["postgres"]["image"].startswith("postgres:16")
    for name in EXPECTED - {"postgres", "sftp"}:
        assert SERVICES[name]["image"] == "numbase:latest" and SERVICES[name]["build"] == "."
        assert SERVICES[name]["env_file"] == ".env"


@pytest.mark.parametrize("name", sorted(LONG_RUNNING))
def test_every_long_running_service_has_a_healthcheck(name: str) -> None:
    check = SERVICES[name]["healthcheck"]
    assert check["test"][0] in {"CMD", "CMD-SHELL"} and len(check["test"]) > 1
    assert check["interval"] and check["retries"] >= 3


def test_dependencies_wait_for_health_and_migrations() -> None:
    assert SERVICES["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "code-location"):
        cond = SERVICES[name]["depends_on"]["migrate"]["condition"]
        assert cond == "service_completed_successfully"
    for name in ("dagster-webserver", "dagster-daemon"):
        assert SERVICES[name]["depends_on"]["code-location"]["condition"] == "service_healthy"
    declared = set(COMPOSE["volumes"])
    for service in SERVICES.values():
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in declared


def _numbase_commands() -> list[list[str]]:
    commands = [SERVICES[n]["command"] for n in EXPECTED - {"postgres", "sftp"}]
    commands += [
        SERVICES[n]["healthcheck"]["test"][1:] for n in LONG_RUNNING - {"postgres", "sftp"}
    ]
    return commands


@pytest.mark.parametrize("argv", _numbase_commands(), ids=lambda a: " ".join(a[:3]))
def test_commands_exist_in_the_package(argv: list[str]) -> None:
    exe = argv[0]
    assert (BIN / exe).exists() or shutil.which(exe), f"{exe} is not installed by the package"
    for arg in argv:
        if re.fullmatch(r"[a-z_]+(\.[a-z_]+)+:[a-z_]+", arg):  # module:attribute
            module, attr = arg.split(":")
            assert hasattr(__import__(module, fromlist=[attr]), attr)
    if "-m" in argv and exe == "dagster":
        module = argv[argv.index("-m") + 1]
        if (ROOT / (module.replace(".", "/") + ".py")).exists():
            __import__(module)
        else:
            pytest.fail(f"{module} does not exist")


def test_no_secrets_in_image_or_compose() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.startswith(("ENV", "ARG")) or line.startswith("    "):
            assert not re.search(r"(SECRET|PASSWORD|API_KEY)\w*=", line), line
    text = (ROOT / "docker-compose.yml").read_text()
    for match in re.finditer(r"(PASSWORD|SECRET|API_KEY)\w*:\s*(\S+)", text):
        assert match.group(2).startswith("${"), f"literal secret in compose: {match.group(0)}"
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in ignored


def test_env_example_lists_every_setting() -> None:
    example = (ROOT / ".env.example").read_text()
    names = {f"{ENV_PREFIX}{field.upper()}" for field in Settings.model_fields}
    # The database URL is composed by compose itself from POSTGRES_PASSWORD.
    missing = {
        n
        for n in names
        - {"NUMBASE_DATABASE_URL", "NUMBASE_SFTP_KEY_FILE", "NUMBASE_SFTP_KNOWN_HOSTS"}
        if f"{n}=" not in example
    }
    assert not missing, f".env.example lacks {sorted(missing)}"


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [
        f"{ENV_PREFIX}{f.upper()}"
        for f in Settings.model_fields
        if f"{ENV_PREFIX}{f.upper()}" not in readme
    ]
    assert not missing, f"README configuration table lacks {missing}"


def test_dagster_instance_config_is_valid(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from dagster._core.instance.config import dagster_instance_config

    for var, value in {
        "NUMBASE_PG_HOST": "postgres",
        "NUMBASE_PG_PORT": "5432",
        "NUMBASE_PG_USER": "numbase",
        "NUMBASE_PG_PASSWORD": "x",
        "NUMBASE_PG_DB": "numbase",
    }.items():
        monkeypatch.setenv(var, value)
    shutil.copy(ROOT / "deploy" / "dagster.yaml", tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    _check_recovery_config(config)
    workspace = yaml.safe_load((ROOT / "deploy" / "workspace.yaml").read_text())
    assert workspace["load_from"][0]["grpc_server"]["host"] == "code-location"


def _check_recovery_config(config: dict) -> None:  # type: ignore[type-arg]
    # Run monitoring on (stuck STARTING/CANCELING runs end), no resume (the default launcher
    # cannot), and Dagster's own run retries off: numbase retries imports itself.
    monitoring = config["run_monitoring"]
    assert monitoring["enabled"] is True and monitoring["max_resume_run_attempts"] == 0
    assert 0 < monitoring["start_timeout_seconds"] <= 300
    assert 0 < monitoring["cancel_timeout_seconds"] <= 300
    assert monitoring["poll_interval_seconds"] <= 60
    assert config["run_retries"]["enabled"] is False


def test_generated_dagster_yaml_matches_the_shipped_recovery_settings(tmp_path: Path) -> None:
    from dagster._core.instance.config import dagster_instance_config

    from orchestration import instance

    shipped = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    assert shipped["run_monitoring"] == instance.RUN_MONITORING
    home = tmp_path / "home"
    home.mkdir()
    generated = {
        "storage": shipped["storage"],
        "run_monitoring": instance.RUN_MONITORING,
        "run_retries": {"enabled": False},
    }
    (home / "dagster.yaml").write_text(yaml.safe_dump(generated))
    config, _ = dagster_instance_config(str(home))
    _check_recovery_config(config)
