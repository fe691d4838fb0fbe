"""Short stable hashes of the configuration keys that decide a result."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def config_hash(config: Mapping[str, Any], keys: tuple[str, ...] | None = None) -> str:
    """A short stable hash of the keys that decide a result (all of them when `keys` is None)."""
    subset = {key: config[key] for key in (config if keys is None else keys) if key in config}
    blob = json.dumps(subset, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
