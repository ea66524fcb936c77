"""docker-compose.yml cannot be started here (no Docker engine), so it is checked statically:
its shape, healthchecks, that every command exists in the installed package, that no secret
is baked into the image or the compose file, and that only the authenticating proxy (and SFTP)
publish ports. Where nginx is installed, the proxy's config is checked by nginx itself
(tests/security/test_proxy.py also runs it in front of the API)."""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cli.up import platform_children
from models.settings import ENV_PREFIX, Settings, SettingsError, load_settings
from tests.security.live import nginx_main_conf

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
EXPECTED = {
    "postgres", "pgbouncer", "sftp", "migrate", "code-location", "dagster-webserver",
    "dagster-daemon", "api", "proxy",
}  # fmt: skip
THIRD_PARTY = {"postgres", "pgbouncer", "sftp", "proxy"}
NUMBASE_SERVICES = EXPECTED - THIRD_PARTY
LONG_RUNNING = EXPECTED - {"migrate"}
BIN = Path(sys.executable).parent
NGINX_CONF = ROOT / "deploy" / "nginx" / "numbase.conf"


def test_services_and_images() -> None:
    assert set(SERVICES) == EXPECTED
    assert SERVICES["postgres"]["image"].startswith("postgres:16")
    assert SERVICES["proxy"]["image"].startswith("nginx:")
    for name in NUMBASE_SERVICES:
        assert SERVICES[name]["image"] == "numbase:latest" and SERVICES[name]["build"] == "."
        assert SERVICES[name]["env_file"] == ".env"


@pytest.mark.parametrize("name", sorted(LONG_RUNNING))
def test_every_long_running_service_has_a_healthcheck(name: str) -> None:
    check = SERVICES[name]["healthcheck"]
    assert check["test"][0] in {"CMD", "CMD-SHELL"} and len(check["test"]) > 1
    assert check["interval"] and check["retries"] >= 3


def test_dependencies_wait_for_health_and_migrations() -> None:
    assert SERVICES["migrate"]["depends_on"]["pgbouncer"]["condition"] == "service_healthy"
    assert SERVICES["pgbouncer"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "code-location"):
        cond = SERVICES[name]["depends_on"]["migrate"]["condition"]
        assert cond == "service_completed_successfully"
    for name in ("dagster-webserver", "dagster-daemon"):
        assert SERVICES[name]["depends_on"]["code-location"]["condition"] == "service_healthy"
    declared = set(COMPOSE["volumes"])
    for service in SERVICES.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):  # a bind mount of a shipped file
                assert (ROOT / source).is_file(), source
            else:
                assert source in declared


def _numbase_commands() -> list[list[str]]:
    commands = [SERVICES[n]["command"] for n in NUMBASE_SERVICES]
    commands += [SERVICES[n]["healthcheck"]["test"][1:] for n in LONG_RUNNING - THIRD_PARTY]
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


def test_only_the_proxy_and_sftp_publish_ports() -> None:
    """PostgreSQL, the API's own port (with /metrics), the Dagster webserver (its GraphQL can
    launch and cancel runs) and the gRPC server stay inside the compose network."""
    published = {name for name, service in SERVICES.items() if service.get("ports")}
    assert published == {"proxy", "sftp"}
    assert {str(p).split(":")[-1] for p in SERVICES["proxy"]["ports"]} == {"8000", "3000"}
    for name in ("api", "dagster-webserver"):
        assert "ports" not in SERVICES[name]
    cond = {n: d["condition"] for n, d in SERVICES["proxy"]["depends_on"].items()}
    assert cond == {"api": "service_healthy", "dagster-webserver": "service_healthy"}


def test_proxy_serves_the_api_paths_only_and_guards_dagster_with_basic_auth() -> None:
    mounts = SERVICES["proxy"]["volumes"]
    assert "./deploy/nginx/numbase.conf:/etc/nginx/conf.d/default.conf:ro" in mounts
    conf = NGINX_CONF.read_text()
    api_server, dagster_server = conf.split("server {")[1:]
    assert "listen 8000;" in api_server and "listen 3000;" in dagster_server
    assert "location /api/ {" in api_server
    assert re.search(r"location / \{\s*return 404;", api_server)  # /metrics among others
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in api_server
    assert "auth_basic " in dagster_server and "auth_basic off" not in conf
    assert "auth_basic_user_file /run/secrets/dagster_htpasswd;" in dagster_server
    assert 'proxy_set_header Authorization "";' in dagster_server
    assert SERVICES["proxy"]["secrets"] == ["dagster_htpasswd"]
    assert COMPOSE["secrets"]["dagster_htpasswd"]["file"] == "./deploy/dagster.htpasswd"


def test_the_dagster_password_file_is_never_committed() -> None:
    assert "deploy/dagster.htpasswd" in (ROOT / ".gitignore").read_text().splitlines()
    tracked = subprocess.run(
        ["git", "ls-files", "deploy"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert not [f for f in tracked if "htpasswd" in f]


def test_api_believes_forwarded_for_from_the_proxy_only() -> None:
    proxy_ip = SERVICES["proxy"]["networks"]["default"]["ipv4_address"]
    subnet = COMPOSE["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(proxy_ip) in ipaddress.ip_network(subnet)
    command = SERVICES["api"]["command"]
    assert "--proxy-headers" in command
    assert command[command.index("--forwarded-allow-ips") + 1] == proxy_ip
    assert SERVICES["api"]["environment"]["NUMBASE_TRUSTED_PROXIES"] == proxy_ip
    assert load_settings(trusted_proxies=proxy_ip).trusted_proxies == proxy_ip
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = next(line for line in dockerfile.splitlines() if line.startswith("CMD"))
    assert "--proxy-headers" in cmd and "--forwarded-allow-ips" in cmd
    assert "NUMBASE_TRUSTED_PROXIES" in cmd


def test_numbase_up_runs_uvicorn_with_the_trusted_proxies(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, trusted_proxies="10.0.0.0/8, 192.0.2.7")
    api = next(c for c in platform_children(settings, {}, with_dagster=False) if c.name == "API")
    assert "--proxy-headers" in api.argv
    assert api.argv[api.argv.index("--forwarded-allow-ips") + 1] == "10.0.0.0/8,192.0.2.7"


@pytest.mark.parametrize("value", ["proxy.example.com", "10.0.0.300", "10.0.0.0/33", "1.2.3.4, x"])
def test_malformed_trusted_proxies_stop_the_start(value: str) -> None:
    """uvicorn would take a typo for a literal that never matches, silently."""
    with pytest.raises(SettingsError, match="NUMBASE_TRUSTED_PROXIES"):
        load_settings(trusted_proxies=value)


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed here")
def test_nginx_accepts_the_shipped_config(tmp_path: Path) -> None:
    """`nginx -t` on the shipped file, included as the official image includes it."""
    main = tmp_path / "nginx.conf"
    main.write_text(nginx_main_conf(tmp_path, NGINX_CONF))
    result = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(main)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


PGBOUNCER_INI = ROOT / "deploy" / "pgbouncer" / "pgbouncer.ini"


def test_every_numbase_process_reaches_postgres_through_pgbouncer() -> None:
    """The plan's pooler: the API, migrations, loader, sensors, runs and dbt as `numbase`,
    Dagster's storage as the alias that sets its search_path (no `options` parameter, which
    pgbouncer refuses)."""
    env = COMPOSE["x-numbase"]["environment"]
    assert "@pgbouncer:6432/numbase" in env["NUMBASE_DATABASE_URL"]
    assert (env["NUMBASE_PG_HOST"], env["NUMBASE_PG_PORT"]) == ("pgbouncer", "6432")
    ini = PGBOUNCER_INI.read_text()
    assert re.search(r"^pool_mode = transaction$", ini, re.M)
    alias = re.search(
        rf"^{env['NUMBASE_PG_DB']} = .*connect_query='SET search_path = dagster'", ini, re.M
    )
    assert alias, "deploy/dagster.yaml's database must be the pgbouncer alias with search_path"
    storage = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    assert "params" not in storage["storage"]["postgres"]["postgres_db"]
    # Pooled: no options (refused by pgbouncer); the run liveness lock on a session-pooled
    # alias whose server connections are reset (DISCARD ALL) when their client leaves.
    assert env["NUMBASE_DB_POOLED"] == "true"
    assert env["NUMBASE_DB_SESSION_URL"].endswith("@pgbouncer:6432/numbase_session")
    assert re.search(r"^numbase_session = .*pool_mode=session", ini, re.M)
    assert not re.search(r"^server_reset_query\s*=\s*$", ini, re.M)
    assert "POSTGRES_PASSWORD" not in (ROOT / "deploy" / "pgbouncer" / "Dockerfile").read_text()


@pytest.mark.skipif(
    not Path("/usr/sbin/pgbouncer").exists(), reason="pgbouncer is not installed (.ci/run does)"
)
def test_shipped_pgbouncer_config_runs_for_real(server_url: str, database_url: str) -> None:
    """deploy/pgbouncer/pgbouncer.ini with only addresses and paths changed, run by Debian's
    pgbouncer in front of the test server: SCRAM with the userlist the entrypoint writes, the
    Dagster alias lands in schema dagster, a wrong password is refused."""
    import os
    import pwd
    import tempfile
    import time

    import psycopg

    from models.pgbouncer import _free_port, _port_open

    upstream = psycopg.conninfo.conninfo_to_dict(server_url)
    db = database_url.rsplit("/", 1)[1]
    port = _free_port()
    work = Path(tempfile.mkdtemp(prefix="numbase-pgb-deploy-"))
    ini = PGBOUNCER_INI.read_text()
    ini = ini.replace("host=postgres port=5432 dbname=numbase",
                      f"host=127.0.0.1 port={upstream['port']} dbname={db}")  # fmt: skip
    ini = ini.replace("listen_addr = 0.0.0.0", "listen_addr = 127.0.0.1")
    ini = ini.replace("listen_port = 6432", f"listen_port = {port}")
    ini = ini.replace("/run/pgbouncer", str(work))
    (work / "numbase.ini").write_text(ini + f"logfile = {work / 'log'}\n")
    (work / "userlist.txt").write_text('"postgres" "deploy-test-password"\n')
    cmd = ["/usr/sbin/pgbouncer"]
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        for path in (work, *work.iterdir()):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        cmd += ["-u", "nobody"]
    # Output to files, not pipes nobody reads (a full pipe blocks pgbouncer's event loop).
    proc = subprocess.Popen([*cmd, str(work / "numbase.ini")], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not _port_open(port):
            assert proc.poll() is None, (
                (work / "log").read_text() if (work / "log").exists() else ""
            )
            assert time.monotonic() < deadline, "pgbouncer did not open its port"
            time.sleep(0.05)
        url = f"postgresql://postgres:deploy-test-password@127.0.0.1:{port}"
        with psycopg.connect(f"{url}/numbase_dagster", prepare_threshold=None) as conn:
            assert conn.execute("SHOW search_path").fetchone() == ("dagster",)
        with psycopg.connect(f"{url}/numbase", prepare_threshold=None) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (db,)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(f"postgresql://postgres:wrong@127.0.0.1:{port}/numbase").close()
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)
