"""SoftPhone webhook signatures.

The sender signs every request with the shared secret (``NUMBASE_SOFTPHONE_WEBHOOK_SECRET``)::

    X-Numbase-Timestamp: 1767225600                      (Unix seconds, when it was sent)
    X-Numbase-Signature: sha256=<hex HMAC-SHA256(secret, b"<timestamp>." + raw body)>

Signing the timestamp with the body means a captured request cannot be re-sent with a fresh
timestamp; a timestamp more than ``softphone_max_skew_seconds`` (300) away from our clock, past or
future, is refused as a replay. Within that window a re-sent request is harmless anyway: events
are idempotent on ``event_id``. Several ``sha256=`` values separated by commas are accepted (any
one matching), so the secret can be rotated without downtime on the sender's side.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from api.deps import SettingsDep

TIMESTAMP_HEADER = "X-Numbase-Timestamp"
SIGNATURE_HEADER = "X-Numbase-Signature"
SCHEME = "sha256="
MAX_BODY_BYTES = 4 * 1024 * 1024  # 1000 events of up to ~4 KB each


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The header value for a body sent at `timestamp` (senders, tests and benchmarks use it)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return SCHEME + mac.hexdigest()


def signed_headers(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        TIMESTAMP_HEADER: str(ts),
        SIGNATURE_HEADER: sign(secret, ts, body),
        "Content-Type": "application/json",
    }


def _reject(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "HMAC"})


def verify(
    secret: str, timestamp: str | None, signature: str | None, body: bytes, max_skew: int
) -> None:
    """Raise 401 unless `signature` signs `body` at a `timestamp` close to now."""
    if not timestamp or not signature:
        raise _reject(f"Missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header.")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise _reject(f"{TIMESTAMP_HEADER} must be Unix seconds.")
    expected = sign(secret, timestamp, body)
    candidates = [s.strip() for s in signature.split(",")]
    # compare_digest on every candidate: the time taken does not depend on which one matched.
    matches = [hmac.compare_digest(expected.encode(), c.encode()) for c in candidates]
    if not any(matches):
        raise _reject("Invalid signature.")
    if abs(time.time() - int(timestamp)) > max_skew:
        raise _reject("Stale or future timestamp (replay protection).")


async def verified_body(request: Request, settings: SettingsDep) -> bytes:
    """The raw request body, once its signature checks out (a dependency for the webhook)."""
    secret = settings.softphone_webhook_secret
    if not secret:
        raise HTTPException(status_code=503, detail="The SoftPhone webhook is not configured.")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise HTTPException(status_code=413, detail=f"Body over {MAX_BODY_BYTES} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():  # bounded even without a Content-Length
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise HTTPException(status_code=413, detail=f"Body over {MAX_BODY_BYTES} bytes.")
        chunks.append(chunk)
    body = b"".join(chunks)
    verify(
        secret,
        request.headers.get(TIMESTAMP_HEADER),
        request.headers.get(SIGNATURE_HEADER),
        body,
        settings.softphone_max_skew_seconds,
    )
    return body


SignedBody = Annotated[bytes, Depends(verified_body)]
