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

# Settings a shard may differ in: its slice, its batch size, and where its host keeps the files
# (the files themselves are compared by the model's checksum and the VCF's size and row count).
PER_SHARD = ("shard", "rows", "batch_size", "checkpoint", "fasta", "vcf")


def _settings(path: str, h5) -> dict:
    """The run settings a shard file records; InputError for a file that is no shard of a run."""
    try:
        settings = json.loads(h5.attrs["jax_basenji"])
        k, n = settings["shard"]
        ok = 1 <= k <= n and len(settings["rows"]) == 3 and settings["stats"]
    except (KeyError, ValueError, TypeError):
        ok = False
    if not ok:
        raise InputError(f"{path} is not a `variants score --shard K/N` output")
    return settings


def _identity(settings: dict) -> dict:
    """What every shard of one run shares."""
    same = {k: v for k, v in settings.items() if k not in PER_SHARD}
    return {**same, "vcf_size": settings["vcf"][1], "vcf_rows": settings["rows"][2]}


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
        common = _identity(first)
        n, total = first["shard"][1], first["rows"][2]
        given = [settings[p]["shard"] for p in order]
        if given != [[k, n] for k in range(1, n + 1)]:
            raise InputError(f"shards {', '.join(f'{k}/{m}' for k, m in given)} given; expected 1/{n} ... {n}/{n}, "
                             f"each once")
        for p in order[1:]:
            other = _identity(settings[p])
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
                 float32=common["float32"], settings={**first, "shard": [1, 1], "rows": [0, total, total],
                                                      "merged": len(order)})
    return common
