"""`variants merge`: the files of `variants score --shard 1/N ... N/N` joined into one sad.h5.

What upstream's `basenji_sad_multi.py` does for cluster schedulers: each shard scores a
contiguous slice of the VCF's rows; the merged file has every row in VCF order and
percentiles over all of them. Shards must come from one run's settings (checkpoint,
model, VCF, genome, tracks, ensemble, N encoding...) and be all there, once each.
"""

from __future__ import annotations

import contextlib
import json

import numpy as np

from jax_basenji.errors import InputError
from jax_basenji.variants.output import STRINGS, read_chunks, write_h5

PER_SHARD = ("shard", "rows", "batch_size")  # settings a shard may differ in


def _settings(path: str, h5) -> dict:
    try:
        return json.loads(h5.attrs["jax_basenji"])
    except (KeyError, ValueError):
        raise InputError(f"{path} is not a `variants score --shard` output (no jax_basenji settings)") from None


def merge_shards(paths: list[str], output: str) -> dict:
    """Write `output` from the shard files `paths`; returns the run's settings."""
    import h5py

    with contextlib.ExitStack() as stack:
        files = {}
        for p in paths:
            try:
                files[p] = stack.enter_context(h5py.File(p, "r"))
            except OSError as e:
                raise InputError(f"{p} is not a readable HDF5 file: {e}") from None
        settings = {p: _settings(p, h5) for p, h5 in files.items()}
        order = sorted(paths, key=lambda p: settings[p]["shard"][0])
        first = settings[order[0]]
        common = {k: v for k, v in first.items() if k not in PER_SHARD}
        n, total = first["shard"][1], first["rows"][2]
        given = [settings[p]["shard"] for p in order]
        if given != [[k, n] for k in range(1, n + 1)]:
            raise InputError(f"shards {', '.join(f'{k}/{m}' for k, m in given)} given; expected 1/{n} ... {n}/{n}, "
                             f"each once")
        for p in order[1:]:
            other = {k: v for k, v in settings[p].items() if k not in PER_SHARD}
            changed = sorted(k for k in set(other) | set(common) if other.get(k) != common.get(k))
            if changed:
                raise InputError(f"{p} was scored with other settings than {order[0]} ({', '.join(changed)})")
            if not np.array_equal(files[p]["target_ids"][:], files[order[0]]["target_ids"][:]):
                raise InputError(f"{p} has other tracks than {order[0]}")
        stats = common["stats"]
        widths = {name: max(files[p][name].dtype.itemsize for p in order) for name in STRINGS}
        h5 = files[order[0]]

        def chunks():
            for p in order:
                yield from read_chunks(files[p], (*STRINGS, "pos", "flipped", *stats))

        write_h5(output, chunks(), rows=sum(len(files[p]["pos"]) for p in order), widths=widths, stats=stats,
                 target_ids=[t.decode() for t in h5["target_ids"][:]],
                 target_labels=[t.decode() for t in h5["target_labels"][:]],
                 float32=h5[stats[0]].dtype == np.float32,
                 settings={**common, "shard": None, "rows": [0, total, total], "merged": len(order)})
    return common
