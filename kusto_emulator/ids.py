"""Identifiers the emulator hands out: unique, not secret."""

from __future__ import annotations

import random
import uuid


def random_uuid() -> str:
    """A version-4 UUID from `random`: these ids need to be unique, not secret, and os.urandom is slow per call."""
    return str(uuid.UUID(int=random.getrandbits(128), version=4))


def new_operation_id() -> str:
    """Opaque, with ';' like the ids real clusters return, so clients must URL-encode it."""
    return f"{random.randrange(10**8):08d};{random.randrange(10**8):08d};{random_uuid()}"
