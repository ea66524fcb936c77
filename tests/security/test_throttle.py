"""The login throttle under attack: concurrent bursts over real HTTP, an office NAT, a guesser
spread over many addresses, a name sprayer, a drained connection pool."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text

import api.routers.auth as auth_router
from api.main import create_app
from api.webhook_auth import signed_headers
from models.db import make_engine
from models.settings import Settings, load_settings
from models.tables import AuditLog
from tests.api.conftest import PASSWORD, TEST_SETTINGS, login
from tests.security.live import serve

POPUP = "/api/softphone/number/+79161234567/"
# What argon2id costs with the production parameters, spent sleeping instead of computing so the
# requests really overlap on this small machine.
ARGON2_SECONDS = 0.5


def _from(app, ip: str) -> TestClient:  # type: ignore[no-untyped-def]
    return TestClient(app, client=(ip, 40000), raise_server_exceptions=False)


def _login(client: TestClient, username: str, password: str) -> httpx.Response:
    return client.post("/api/auth/login/", json={"username": username, "password": password})


@pytest.fixture
def counted_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every password the login checks, each check taking ARGON2_SECONDS."""
    checked: list[str] = []
    lock = threading.Lock()
    real = auth_router.verify_password

    def slow_verify(password: str, password_hash: str | None) -> bool:
        with lock:
            checked.append(password)
        time.sleep(ARGON2_SECONDS)
        return real(password, password_hash)

    monkeypatch.setattr(auth_router, "verify_password", slow_verify)
    return checked


@pytest.fixture
def small_pool(database_url: str, db: Engine) -> Iterator[Engine]:
    """Four connections (and SQLAlchemy's 30 s pool timeout): what a busy process has to spare."""
    engine = make_engine(database_url, pool_size=2)
    yield engine
    engine.dispose()


def _burst(url: str, username: str, passwords: list[str]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(passwords))
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
            return await asyncio.gather(
                *(
                    client.post("/api/auth/login/", json={"username": username, "password": p})
                    for p in passwords
                )
            )

    return asyncio.run(run())


def test_concurrent_burst_checks_at_most_the_limit_and_never_500(
    settings: Settings, small_pool: Engine, factory, counted_checks: list[str]
) -> None:
    user = factory.user(password=PASSWORD)
    passwords = [f"guess-{n}" for n in range(59)]
    passwords.insert(45, PASSWORD)  # the right one, late in a 60-request burst
    with serve(create_app(settings=settings, engine=small_pool)) as url:
        responses = _burst(url, user.username, passwords)
    statuses = Counter(r.status_code for r in responses)
    assert not [s for s in statuses if s >= 500], statuses
    assert set(statuses) <= {200, 401, 429}, statuses
    wrong = [p for p in counted_checks if p != PASSWORD]
    assert len(wrong) <= settings.login_max_failures, statuses
    assert statuses[401] == len(wrong)
    # The right password got in only if it was among the attempts the limit allowed.
    assert statuses[200] == (PASSWORD in counted_checks)
    assert len(counted_checks) <= settings.login_max_failures + 1
    for resp in responses:
        if resp.status_code == 429:
            assert 1 <= int(resp.headers["Retry-After"]) <= settings.login_window_seconds


def test_concurrent_burst_of_names_from_one_address(
    database_url: str, small_pool: Engine, factory, counted_checks: list[str]
) -> None:
    """A sprayer trying 60 names at once from one address gets the per-address limit checked,
    not more — the count is atomic across usernames too."""
    settings = load_settings(
        database_url=database_url, **{**TEST_SETTINGS, "login_max_failures_per_address": 10}
    )
    names = [f"nobody{n}" for n in range(60)]

    async def run(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            return await asyncio.gather(
                *(
                    client.post("/api/auth/login/", json={"username": n, "password": "guess"})
                    for n in names
                )
            )

    with serve(create_app(settings=settings, engine=small_pool)) as url:
        responses = asyncio.run(run(url))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {401: 10, 429: 50}, statuses
    assert len(counted_checks) == 10


def test_typos_behind_an_office_nat_slow_down_only_the_typist(app, factory, settings) -> None:
    office = _from(app, "203.0.113.10")
    typist, colleagues = factory.user(password=PASSWORD), [factory.user(password=PASSWORD)]
    colleagues.append(factory.user(password=PASSWORD))
    for _ in range(settings.login_max_failures):
        assert _login(office, typist.username, "typo-typo").status_code == 401
    blocked = _login(office, typist.username, PASSWORD)
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) >= 1
    for colleague in colleagues:  # same address, other people: not affected
        assert _login(office, colleague.username, PASSWORD).status_code == 200


def test_nobody_can_lock_an_account_out_by_name(app, factory, settings) -> None:
    admin = factory.user(role="admin", password=PASSWORD)
    office = _from(app, "198.51.100.20")
    assert _login(office, admin.username, PASSWORD).status_code == 200  # a known-good pair
    # Guesses at the admin's name from one address and from forty.
    attacker = _from(app, "192.0.2.66")
    for _ in range(20):
        assert _login(attacker, admin.username, "guess-guess").status_code in {401, 429}
    for n in range(40):
        resp = _login(_from(app, f"203.0.113.{n + 1}"), admin.username, "guess-guess")
        assert resp.status_code in {401, 429}
        if resp.status_code == 429:  # a back-off, never a lock
            assert 1 <= int(resp.headers["Retry-After"]) <= settings.login_backoff_max_seconds
    # The admin still gets in from where they work, at once.
    assert _login(office, admin.username, PASSWORD).status_code == 200
    # From an address never used before, the wait is the back-off, not the window.
    elsewhere = _login(_from(app, "192.0.2.200"), admin.username, PASSWORD)
    if elsewhere.status_code == 429:
        assert int(elsewhere.headers["Retry-After"]) <= settings.login_backoff_max_seconds


def _age_failures(engine: Engine, seconds: float) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE login_failures SET attempted_at = attempted_at - make_interval(secs => :s)"
            ),
            {"s": seconds},
        )


def test_one_name_guessed_from_many_addresses_backs_off_exponentially(
    app, factory, settings, db: Engine
) -> None:
    user = factory.user(password=PASSWORD)
    addresses = (f"203.0.113.{n}" for n in range(1, 200))
    limit = settings.login_max_failures
    for _ in range(limit):  # each address tries once: no pair or address limit is reached
        assert _login(_from(app, next(addresses)), user.username, "guess").status_code == 401
    for step in range(5):
        # The latest attempt 2 s ahead, so a slow machine cannot let the wait pass unseen.
        _age_failures(db, -2)
        resp = _login(_from(app, next(addresses)), user.username, "guess")
        assert resp.status_code == 429, resp.text
        assert 1 <= int(resp.headers["Retry-After"]) <= 2**step + 2
        _age_failures(db, 2)
        _age_failures(db, 2**step + 0.5)  # the wait passes
        assert _login(_from(app, next(addresses)), user.username, "guess").status_code == 401
    # However many failures, the wait stays capped.
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO login_failures (username, ip_address) "
                "SELECT :u, '192.0.2.1' FROM generate_series(1, 60)"
            ),
            {"u": user.username},
        )
    resp = _login(_from(app, next(addresses)), user.username, PASSWORD)
    assert resp.status_code == 429
    cap = settings.login_backoff_max_seconds
    assert cap - 10 <= int(resp.headers["Retry-After"]) <= cap
    # And a wait is all it is: once it has passed, the right password gets in.
    _age_failures(db, settings.login_backoff_max_seconds + 1)
    assert _login(_from(app, next(addresses)), user.username, PASSWORD).status_code == 200


def test_spraying_names_from_one_address_hits_the_per_address_limit(
    database_url: str, db: Engine, factory
) -> None:
    settings = load_settings(
        database_url=database_url, **{**TEST_SETTINGS, "login_max_failures_per_address": 8}
    )
    app = create_app(settings=settings, engine=db)
    office = _from(app, "203.0.113.77")
    regular = factory.user(password=PASSWORD)
    assert _login(office, regular.username, PASSWORD).status_code == 200
    for n in range(8):
        assert _login(office, f"name{n}", "guess").status_code == 401
    assert _login(office, "name-next", "guess").status_code == 429
    newcomer = factory.user(password=PASSWORD)
    assert _login(office, newcomer.username, PASSWORD).status_code == 429
    # Agents who have logged in from this address before are not held up by the sprayer.
    assert _login(office, regular.username, PASSWORD).status_code == 200
    # Other addresses are not affected at all.
    assert _login(_from(app, "198.51.100.1"), newcomer.username, PASSWORD).status_code == 200


def test_right_passwords_are_never_counted(app, factory, settings) -> None:
    user = factory.user(password=PASSWORD)
    desk = _from(app, "198.51.100.5")
    for _ in range(settings.login_max_failures * 3):
        assert _login(desk, user.username, PASSWORD).status_code == 200
    for _ in range(settings.login_max_failures):
        assert _login(desk, user.username, "typo-typo").status_code == 401
    assert _login(desk, user.username, PASSWORD).status_code == 429


def test_unknown_names_are_throttled_like_real_ones(app, settings) -> None:
    """Same answers for a name that does not exist: the throttle tells nobody which do."""
    desk = _from(app, "198.51.100.6")
    answers = [
        _login(desk, "ghost", "guess").status_code for _ in range(settings.login_max_failures + 1)
    ]
    assert answers == [401] * settings.login_max_failures + [429]


def test_pool_exhaustion_is_503_with_retry_after(settings, database_url, db, factory) -> None:
    """Every pooled connection busy past the pool timeout: the documented 503, on the routed
    paths, the pop-up's bare connection and the webhook's fast path alike."""
    engine = make_engine(database_url, pool_size=1, pool_timeout=0.3)  # two connections
    event = {
        "event_id": "pool-1",
        "event_type": "call_started",
        "phone_number": "+79161230001",
        "occurred_at": "2026-01-01T10:00:00+00:00",
    }
    body = json.dumps(event).encode()
    webhook_headers = signed_headers(settings.softphone_webhook_secret, body)
    try:
        app = create_app(settings=settings, engine=engine)
        with TestClient(app, raise_server_exceptions=False) as client:
            user = factory.user(password=PASSWORD)
            actor = login(client, user)
            held = [engine.connect(), engine.connect()]
            try:
                for resp in (
                    client.get("/api/auth/me/", headers=actor.headers),
                    client.get("/api/projects/", headers=actor.headers),
                    client.get(POPUP, headers=actor.headers),
                    _login(client, user.username, PASSWORD),
                    client.post("/api/softphone/webhook/", content=body, headers=webhook_headers),
                ):
                    assert resp.status_code == 503, (resp.request.url, resp.text)
                    assert int(resp.headers["Retry-After"]) >= 1
            finally:
                for conn in held:
                    conn.close()
            assert client.get("/api/auth/me/", headers=actor.headers).status_code == 200
    finally:
        engine.dispose()


def test_addresses_behind_a_trusted_proxy_are_the_clients(app, factory, settings, session) -> None:
    """uvicorn as `numbase up` runs it: X-Forwarded-For from a trusted proxy is the address the
    throttle and the audit log see; from anyone else it is ignored."""
    typist, colleague = factory.user(password=PASSWORD), factory.user(password=PASSWORD)
    office = {"X-Forwarded-For": "203.0.113.50"}
    with serve(app, forwarded_allow_ips="127.0.0.1") as url, httpx.Client(base_url=url) as http:
        for _ in range(settings.login_max_failures):
            resp = http.post(
                "/api/auth/login/",
                json={"username": typist.username, "password": "typo"},
                headers=office,
            )
            assert resp.status_code == 401
        resp = http.post(
            "/api/auth/login/",
            json={"username": colleague.username, "password": PASSWORD},
            headers=office,
        )
        assert resp.status_code == 200
        # A client cannot pick its own address by sending the header through the proxy.
        spoofed = http.post(
            "/api/auth/login/",
            json={"username": typist.username, "password": PASSWORD},
            headers={"X-Forwarded-For": "192.0.2.1, 203.0.113.50"},
        )
        assert spoofed.status_code == 429
    with serve(app, forwarded_allow_ips="10.9.9.9") as url, httpx.Client(base_url=url) as http:
        resp = http.post(
            "/api/auth/login/",
            json={"username": colleague.username, "password": PASSWORD},
            headers={"X-Forwarded-For": "192.0.2.99"},
        )
        assert resp.status_code == 200
    addresses = session.scalars(
        select(AuditLog.ip_address)
        .where(AuditLog.action == "login", AuditLog.user_id == colleague.id)
        .order_by(AuditLog.id)
    ).all()
    assert [str(a) for a in addresses] == ["203.0.113.50", "127.0.0.1"]
