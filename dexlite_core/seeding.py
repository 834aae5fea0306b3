"""Per-object random seeds that do not depend on run order, sharding or the process."""

from __future__ import annotations

import hashlib


def stable_int(text: str) -> int:
    """A 32-bit integer from `text` (sha256): the same object gets the same seed in every shard."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
