"""Reading request bodies safely: a size limit, strict UTF-8 and JSON errors that say where and what."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import ClientDisconnect, Request

from .errors import BadRequest, PayloadTooLarge


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 once it exceeds `limit` bytes (declared or actually sent)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest(f"Content-Length {declared!r} is not a number")
        if int(declared) > limit:
            raise PayloadTooLarge(f"the request body has {declared} bytes; the emulator accepts at most {limit}")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the request body exceeds {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise BadRequest(f"the client disconnected after {size} bytes, before the end of the body") from None
    return b"".join(chunks)


def parse_json(body: bytes, what: str = "request body") -> Any:
    """`body` as JSON; BadRequest naming the position of the problem (or that it is not UTF-8)."""
    if not body.strip():
        raise BadRequest(f"the {what} is empty: send a JSON object")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise BadRequest(f"the {what} is not valid UTF-8 (byte {error.start}): send UTF-8 encoded JSON") from None
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        raise BadRequest(f"the {what} is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    except ValueError as error:  # a number of more digits than Python converts, or NaN/Infinity
        raise BadRequest(f"the {what} is not valid JSON: {error}") from None
    except RecursionError:
        raise BadRequest(f"the {what} is not valid JSON: nested too deeply") from None


def _refuse_constant(name: str) -> Any:
    """NaN and Infinity are not JSON (RFC 8259); Python's reader would take them."""
    raise ValueError(f"{name} is not a JSON value")


async def read_json_body(request: Request, limit: int, what: str = "request body") -> Any:
    return parse_json(await read_body(request, limit), what)
