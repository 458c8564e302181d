"""Checksums of what the project writes, so damaged files are reported instead of read back silently.

orbax stores raw array bytes without checksums and the store's shards are raw
arrays: a flipped bit there would change a weight or a target without any error.
Every checkpoint therefore records the CRC32C of each array and of its own JSON,
and every store shard the CRC32C of each example; readers compare them.
"""

from __future__ import annotations

import json

import google_crc32c
import jax
import numpy as np


def crc(data) -> str:
    """CRC32C of bytes or an array's memory, as 8 hex digits (google-crc32c's C code: ~17 GB/s)."""
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data)
        if data.flags.writeable:  # the C code takes read-only buffers only: a view costs nothing
            data = data.view()
            data.flags.writeable = False
    return f"{google_crc32c.value(data):08x}"


def leaf_paths(tree) -> dict[str, object]:
    """{"a/0/b": leaf}: one spelling for int and str keys (orbax's metadata turns 0 into "0")."""
    return {jax.tree_util.keystr(path, simple=True, separator="/"): leaf
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def host_value(leaf) -> np.ndarray:
    """A leaf as a numpy array; a replicated array of a multi-process run from this process's copy."""
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        return np.asarray(leaf.addressable_data(0))
    return np.asarray(leaf)


def tree_crcs(tree) -> dict[str, str]:
    """{leaf path: CRC32C of its bytes} of a pytree of arrays (device arrays are fetched)."""
    return {k: crc(host_value(leaf)) for k, leaf in leaf_paths(tree).items()}


def mismatches(tree, expected: dict[str, str]) -> list[str]:
    """Leaf paths whose bytes differ from `expected` (missing and unexpected leaves included)."""
    got = tree_crcs(tree)
    return sorted(k for k in set(got) | set(expected) if got.get(k) != expected.get(k))


def json_crc(obj) -> str:
    """CRC32C of a JSON value in canonical form (sorted keys), to seal metadata."""
    return crc(json.dumps(obj, sort_keys=True).encode())


def sealed(obj: dict) -> dict:
    """`obj` plus "crc32c", the checksum of the rest (see `seal_ok`)."""
    return {**obj, "crc32c": json_crc(obj)}


def seal_ok(obj: dict) -> bool:
    """False if `obj` carries a "crc32c" that its content does not match (unsealed objects pass)."""
    return "crc32c" not in obj or json_crc({k: v for k, v in obj.items() if k != "crc32c"}) == obj["crc32c"]
