"""Limits on the free-form JSON objects the platform accepts and stores (a number's `result_data`
and `attributes`, a provider's `contact_info`, SoftPhone event payloads, job `params`): one rule
for every entry point, and the read-side guard for values stored before it.

Why limits at all: every layer that touches such a value has its own nesting limit, and they
disagree. pydantic-core's serializer, which writes every API response, gives up past 255 levels
("Maximum serialization depth exceeded"); Python's `json` past about 1,000 (RecursionError, in
the driver that loads jsonb too); PostgreSQL's jsonb parser at `max_stack_depth` (several
thousand). A value between two of them is accepted and stored, and then every read that
serializes it fails: a 256-deep `result_data` was committed, then broke the number, its
project's list, the audit log and the pop-up. So nothing past MAX_DEPTH is accepted, and reads
clip whatever deeper value is already stored (load_stored_json) instead of failing.

Depth counts containers: `{}` and `[]` are depth 1, `{"a": [1]}` depth 2, a scalar 0.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 32
MAX_BYTES = 64 * 1024  # as compact UTF-8 JSON: what one object may add to a row
# Reads show stored values up to this depth (well under pydantic-core's 255, leaving room for
# the levels a response wraps around them, e.g. the audit log's {field: [old, new]}).
READ_MAX_DEPTH = 64
TOO_DEEP = f"[nested deeper than {READ_MAX_DEPTH} levels: not shown]"
_CONTAINERS = (dict, list)  # a tuple: isinstance is faster with it than with dict | list


class JsonLimitError(ValueError):
    """A JSON value over a limit; `key` is the top-level key it was found under (if any)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def check_json(value: Any, *, max_depth: int = MAX_DEPTH, max_bytes: int = MAX_BYTES) -> None:
    """Raise JsonLimitError unless `value` is JSON PostgreSQL can store and the API can read
    back: at most `max_depth` levels and `max_bytes` bytes, no NUL character in any key or
    string (jsonb cannot hold one), no NaN or Infinity (not JSON; jsonb refuses them)."""
    # Iterative: the value may be nested deeper than Python's recursion limit.
    stack: list[tuple[Any, int, str | None]] = [(value, 0, None)]
    while stack:
        node, depth, key = stack.pop()
        if isinstance(node, dict | list):
            depth += 1
            if depth > max_depth:
                raise JsonLimitError(f"Nested deeper than {max_depth} levels.", key)
            if isinstance(node, dict):
                for k, v in node.items():
                    if not isinstance(k, str):
                        raise JsonLimitError("Object keys must be strings.", key)
                    if "\x00" in k:
                        raise JsonLimitError("Text cannot contain NUL characters.", key)
                    stack.append((v, depth, key if depth > 1 else k))
            else:
                stack.extend((v, depth, key) for v in node)
        elif isinstance(node, str):
            if "\x00" in node:
                raise JsonLimitError("Text cannot contain NUL characters.", key)
        elif isinstance(node, float):
            if not math.isfinite(node):
                raise JsonLimitError("NaN and Infinity are not JSON numbers.", key)
        elif node is not None and not isinstance(node, int):  # bool is an int
            raise JsonLimitError(f"{type(node).__name__} is not a JSON value.", key)
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > max_bytes:
        raise JsonLimitError(f"Larger than {max_bytes} bytes as JSON ({size} bytes).")


def depth_of(value: Any, stop_after: int | None = None) -> int:
    """Nesting depth of a parsed JSON value; stops early once past `stop_after`. Level by
    level, without recursion: cheap for the usual flat object (one pass over its values)."""
    level = [value] if isinstance(value, _CONTAINERS) else []
    depth = 0
    while level:
        depth += 1
        if stop_after is not None and depth > stop_after:
            return depth
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, _CONTAINERS)
        ]
    return depth


def clip_depth(value: Any, max_depth: int = READ_MAX_DEPTH) -> Any:
    """`value` itself when at most `max_depth` deep (the usual case: no copy), else a copy with
    every container below that depth replaced by the TOO_DEEP text. The stored value is never
    changed: this is what a read shows."""
    if depth_of(value, stop_after=max_depth) <= max_depth:
        return value
    return _clipped(value, max_depth)


def _clipped(node: Any, levels: int) -> Any:
    # Recursion is bounded by `levels` (at most READ_MAX_DEPTH).
    if not isinstance(node, dict | list):
        return node
    if levels == 0:
        return TOO_DEEP
    if isinstance(node, dict):
        return {k: _clipped(v, levels - 1) for k, v in node.items()}
    return [_clipped(v, levels - 1) for v in node]


def clip_text(text: str, max_depth: int = READ_MAX_DEPTH) -> str:
    """JSON text with every container below `max_depth` replaced by the TOO_DEEP string, for
    text too deep to parse at all (clip_depth needs a parsed value). Assumes valid JSON (what
    PostgreSQL returns for jsonb)."""
    out: list[str] = []
    depth = 0
    skip_from: int | None = None  # depth at which the container being dropped was opened
    in_string = escaped = False
    start = 0  # start of the pending run of kept characters
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
            if skip_from is None and depth > max_depth:
                out.append(text[start:i])
                out.append(json.dumps(TOO_DEEP))
                skip_from = depth
        elif ch in "}]":
            if skip_from is not None and depth == skip_from:
                skip_from = None
                start = i + 1
            depth -= 1
    if skip_from is None:
        out.append(text[start:])
    return "".join(out)


class ClippedJson(dict):  # type: ignore[type-arg]
    """An object load_stored_json could only read in part (clipped, or numbers as text): what
    a read shows, never something to merge into and write back."""


def _lenient_int(digits: str) -> int | str:
    # Past Python's int-to-text limit (4,300 digits) the number is shown as its text.
    try:
        return int(digits)
    except ValueError:
        return digits


def load_stored_json(data: bytes | str) -> Any:
    """json.loads for values read back from the database: never fails on valid JSON, and never
    returns a value nested deeper than READ_MAX_DEPTH (what the API can serialize).

    Too deep to parse (RecursionError) -> parsed from clip_text; parsed but too deep ->
    clip_depth; an integer too long for Python -> its digits as a string. An object read that
    way comes back as a ClippedJson. The fast path is plain json.loads plus a bracket count:
    a text with at most READ_MAX_DEPTH brackets cannot be nested deeper."""
    try:
        value = json.loads(data)
    except (RecursionError, ValueError):
        text = data.decode() if isinstance(data, bytes) else data
        value = json.loads(clip_text(text), parse_int=_lenient_int)
    else:
        brackets = data.count(b"{" if isinstance(data, bytes) else "{") + data.count(
            b"[" if isinstance(data, bytes) else "["
        )
        if brackets <= READ_MAX_DEPTH or depth_of(value, READ_MAX_DEPTH) <= READ_MAX_DEPTH:
            return value
        value = _clipped(value, READ_MAX_DEPTH)
    return ClippedJson(value) if isinstance(value, dict) else value
