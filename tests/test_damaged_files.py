"""Damaged files, as disks, copies and interrupted downloads damage them: a seeded battery.

Each trial copies a small, valid set of inputs, flips one random bit or truncates one
file at a random offset, and runs the command that reads it, in-process. Every trial
must end one of two ways, never with a traceback or a half-written output:
  - exit 0 with the result of the undamaged input (the byte did not matter), or
  - exit 2 with one `error: ...` line naming the damaged file or a directory holding it.
Formats that carry checksums (TFRecord CRCs, the store's and checkpoints' CRC32C, the
zip CRC32 of torch files) must never give a different result. Formats without any
(FASTA and its .fai, BED, VCF text, targets tables, bigWig headers, HDF5 weights) cannot tell a
changed value from a real one; for them a different result is counted and printed.
`pytest --long` runs 20x more trials.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import random
import shutil
import sys
import warnings
from pathlib import Path
from typing import Callable

import jax
import numpy as np
import pyBigWig
import pytest
import torch

from jax_basenji import convert
from jax_basenji.checkpoint import load_arrays, save_model
from jax_basenji.config import ModelConfig
from jax_basenji.data.__main__ import main as data_main
from jax_basenji.data.store import StoreSubset
from jax_basenji.data.synth import SynthConfig, synth
from jax_basenji.data.tfrecord import read_records, write_records
from jax_basenji.errors import UserError
from jax_basenji.model import build_model
from jax_basenji.variants.__main__ import main as variants_main
from torch_ref import Basenji2 as TorchBasenji2
from torch_ref import build_torch_model

KERAS_TINY = Path(__file__).parent / "fixtures" / "keras" / "basenji2_tiny_model.h5"
TRIALS = 8  # per file kind; --long: 20x


def digest(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else np.ascontiguousarray(p).tobytes() if isinstance(p, np.ndarray)
                 else repr(p).encode())
    return h.hexdigest()


def store_digest(store: Path) -> str:
    parts = []
    for species in sorted(p.name for p in store.iterdir() if (p / "meta.json").exists()):
        for subset in ("train", "valid", "test"):
            if (store / species / subset / "index.json").exists():
                data = StoreSubset(str(store), species, subset)
                parts += [data.meta["targets"], data.regions, *(a for i in range(len(data)) for a in data[i])]
    return digest(*parts)


def checkpoint_digest(path: Path) -> str:
    arrays, cfg, _ = load_arrays(str(path))
    return digest(cfg.to_dict(), *(np.asarray(a) for a in jax.tree.leaves(arrays)))


@dataclasses.dataclass
class Kind:
    """One file kind: how to make it, which files to damage, the command that reads them."""

    name: str
    make: Callable[[Path], None]  # writes the valid inputs into a directory
    damageable: Callable[[Path], list[Path]]  # the files of those inputs to damage
    run: Callable[[Path, Path], int]  # (inputs, output path) -> exit code
    result: Callable[[Path], str]  # digest of a successful run's output
    half_written: Callable[[Path], list[Path]]  # what a failed run must not leave behind
    protected: Callable[[Path], bool]  # does this file carry checksums?


# ----- the inputs ---------------------------------------------------------------------------
def make_basenji(d: Path) -> None:
    synth(str(d / "basenji"), {"human": 4}, SynthConfig(seq_length=2048, examples=(
        ("train", 6), ("valid", 2), ("test", 2)), records_per_file=3, crop_bp=256), progress=False)


def make_store(d: Path) -> None:
    make_basenji(d)
    assert data_main(["convert", "--input", str(d / "basenji"), "--output", str(d / "store"), "--no-progress"]) == 0
    shutil.rmtree(d / "basenji")


def make_checkpoint(d: Path) -> None:
    save_model(str(d / "ckpt"), build_model(ModelConfig.tiny(heads={"human": 4})))


def make_seed_pt(d: Path) -> None:
    torch.manual_seed(0)
    torch.save(TorchBasenji2(ModelConfig.tiny(heads={"human": 4})).state_dict(), d / "seed.pt")
    (d / "tiny.json").write_text(ModelConfig.tiny(heads={"human": 4}).to_json())


def make_pth(d: Path) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig.preset("tiny-basenji2")
    torch.save(build_torch_model(cfg).state_dict(), d / "basenji2.pth")
    (d / "tiny.json").write_text(cfg.to_json())


def make_keras(d: Path) -> None:
    shutil.copy(KERAS_TINY, d / "model.h5")
    (d / "tiny.json").write_text(ModelConfig.preset("tiny-basenji2").to_json())


def make_tracks_inputs(d: Path) -> None:
    rng = np.random.default_rng(0)
    (d / "g.fa").write_text(">chrA\n" + "\n".join("".join(rng.choice(list("ACGT"), 60)) for _ in range(100)) + "\n")
    import pyfaidx

    pyfaidx.Faidx(str(d / "g.fa")).close()  # the .fai, damaged too
    bw = pyBigWig.open(str(d / "a.bw"), "w")
    bw.addHeader([("chrA", 6000)])
    bw.addEntries("chrA", 0, values=rng.uniform(0, 4, 6000).astype(np.float32).tolist(), span=1, step=1)
    bw.close()
    (d / "r.bed").write_text("".join(f"chrA\t{s}\t{s + 1024}\t{subset}\n" for s, subset in
                                     ((0, "train"), (1500, "train"), (3000, "valid"), (4500, "test"))))


def make_vcf(d: Path) -> None:
    rng = np.random.default_rng(1)
    seq = "".join(rng.choice(list("ACGT"), 20_000))
    (d / "g.fa").write_text(">chr1\n" + seq + "\n")
    save_model(str(d / "ckpt"), build_model(ModelConfig.tiny(heads={"human": 2})))
    rows = [f"chr1\t{p}\trs{p}\t{seq[p - 1]}\t{'ACGT'[('ACGT'.index(seq[p - 1]) + 1) % 4]}\t.\t.\t.\n"
            for p in (5_000, 9_000, 12_000)]
    (d / "in.vcf").write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n" + "".join(rows))


def vcf_result(out: Path) -> str:
    import h5py

    with h5py.File(out) as h5:
        return digest(*(h5[k][:] for k in sorted(h5)))


def make_plain_tfrecord(d: Path) -> None:
    write_records(str(d / "plain.tfr"), [bytes([i]) * (50 + i) for i in range(8)], compression="NONE")


# ----- the commands --------------------------------------------------------------------------
def files_under(*names: str) -> Callable[[Path], list[Path]]:
    return lambda d: sorted(p for name in names for p in (d / name).rglob("*") if p.is_file()) + \
        [d / n for n in names if (d / n).is_file()]


def run_plain(d: Path, out: Path) -> int:
    """No command reads plain TFRecords (Basenji's are ZLIB): the reader itself, as the CLIs wrap it."""
    try:
        out.write_bytes(b"".join(read_records(str(d / "plain.tfr"), compression="NONE")))
        return 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def tracks_result(out: Path) -> str:
    species = out / "mouse"
    records = [r for f in sorted((species / "tfrecords").iterdir()) for r in read_records(str(f))]
    return digest(*records, (species / "sequences.bed").read_bytes(), (species / "statistics.json").read_bytes())


def pth_result(out: Path) -> str:
    sd = torch.load(out, weights_only=True)
    return digest(*((k, v.numpy()) for k, v in sd.items()))


def no_store_left(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.name == "meta.json" or p.suffix == ".tmp"] if out.exists() else []


def exists(out: Path) -> list[Path]:
    return [out] if out.exists() else []


def tracks_left(out: Path) -> list[Path]:
    return [p for p in (out / "mouse", out / "mouse.partial") if p.exists()]


ALL = lambda p: True  # noqa: E731
NONE = lambda p: False  # noqa: E731
TINY_JSON = lambda p: p.name != "tiny.json"  # noqa: E731 - the config JSON is plain text

KINDS = [
    Kind("tfrecord-zlib", make_basenji, files_under("basenji"),
         lambda d, out: data_main(["convert", "--input", str(d / "basenji"), "--output", str(out), "--no-progress"]),
         store_digest, no_store_left, lambda p: p.suffix == ".tfr"),
    Kind("tfrecord-plain", make_plain_tfrecord, files_under("plain.tfr"), run_plain,
         lambda out: digest(out.read_bytes()), exists, ALL),
    Kind("store", make_store, files_under("store"),
         lambda d, out: data_main(["verify", "--store", str(d / "store"), "--no-progress"]),
         lambda out: store_digest(out.parent / "inputs" / "store"), lambda out: [], ALL),
    Kind("model-checkpoint", make_checkpoint, files_under("ckpt"),
         lambda d, out: convert.main(["jax-to-torch", "--input", str(d / "ckpt"), "--output", str(out)]),
         pth_result, exists, ALL),
    Kind("seed-pt", make_seed_pt, files_under("seed.pt", "tiny.json"),
         lambda d, out: convert.main(["torch-to-jax", "--input", str(d / "seed.pt"), "--output", str(out),
                                      "--variant", "basenji2-double-prime", "--config", str(d / "tiny.json")]),
         checkpoint_digest, exists, TINY_JSON),
    Kind("basenji2-pytorch-pth", make_pth, files_under("basenji2.pth", "tiny.json"),
         lambda d, out: convert.main(["torch-to-jax", "--input", str(d / "basenji2.pth"), "--output", str(out),
                                      "--config", str(d / "tiny.json")]),
         checkpoint_digest, exists, TINY_JSON),
    Kind("keras-h5", make_keras, files_under("model.h5", "tiny.json"),
         lambda d, out: convert.main(["keras-to-jax", "--input", str(d / "model.h5"), "--output", str(out),
                                      "--config", str(d / "tiny.json")]),
         checkpoint_digest, exists, NONE),
    Kind("vcf", make_vcf, files_under("in.vcf"),
         lambda d, out: variants_main(["score", "--checkpoint", str(d / "ckpt"), "--head", "human", "--vcf",
                                       str(d / "in.vcf"), "--fasta", str(d / "g.fa"), "--output", str(out),
                                       "--no-progress"]),
         vcf_result, lambda out: [p for p in out.parent.iterdir() if p.name.startswith(("out", ".tmp"))], NONE),
    Kind("bed-bigwig-fasta", make_tracks_inputs, files_under("g.fa", "g.fa.fai", "a.bw", "r.bed"),
         lambda d, out: data_main(["tracks", "--regions", str(d / "r.bed"), "--bigwig", str(d / "a.bw"),
                                   "--fasta", str(d / "g.fa"), "--output", str(out), "--crop-bp", "128",
                                   "--species", "mouse", "--no-progress"]),
         tracks_result, tracks_left, NONE),
]


def damage(path: Path, rng: random.Random) -> str:
    data = bytearray(path.read_bytes())
    if not data:
        return f"{path.name}: empty, left as is"
    at = rng.randrange(len(data))
    if rng.random() < 0.5:
        bit = rng.randrange(8)
        data[at] ^= 1 << bit
        what = f"bit {bit} of byte {at} flipped"
    else:
        what = f"truncated to {at} of {len(data)} bytes"
        del data[at:]
    path.write_bytes(bytes(data))
    return f"{path.name}: {what}"


def run_quietly(kind: Kind, inputs: Path, out: Path) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # data tracks warns about regions past chromosome ends
        rc = kind.run(inputs, out)
    return rc, err.getvalue()


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_damaged_inputs_give_the_same_result_or_one_line_naming_the_file(kind, tmp_path, request, capsys):
    pristine = tmp_path / "pristine"
    pristine.mkdir()
    kind.make(pristine)
    ref_dir = tmp_path / "ref"
    shutil.copytree(pristine, ref_dir / "inputs")
    rc, err = run_quietly(kind, ref_dir / "inputs", ref_dir / "out")
    assert rc == 0, err
    reference = kind.result(ref_dir / "out")

    rng = random.Random(f"{kind.name}-0")
    trials = TRIALS * (20 if request.config.getoption("--long") else 1)
    outcomes = {"same": 0, "error": 0, "different (no checksum in the format)": 0}
    for t in range(trials):
        trial = tmp_path / f"t{t}"
        shutil.copytree(pristine, trial / "inputs")
        files = kind.damageable(trial / "inputs")
        target = rng.choice(files)
        what = damage(target, rng)
        rc, err = run_quietly(kind, trial / "inputs", trial / "out")
        assert "Traceback" not in err, f"{what}: {err}"
        if rc == 0:
            if kind.result(trial / "out") == reference:
                outcomes["same"] += 1
            else:
                assert not kind.protected(target), f"{what}: a silently different result"
                outcomes["different (no checksum in the format)"] += 1
        else:
            lines = [line for line in err.splitlines() if line.strip()]
            assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), f"{what}: rc {rc}: {err}"
            named = [target, *(p for p in target.parents if trial / "inputs" in p.parents)]
            assert any(str(p) in lines[0] for p in named), f"{what}: the error does not name the file: {lines[0]}"
            assert not kind.half_written(trial / "out"), f"{what}: left {kind.half_written(trial / 'out')}"
            outcomes["error"] += 1
        shutil.rmtree(trial)
    with capsys.disabled():
        print(f"\n[damage] {kind.name}: {trials} trials: {outcomes}")
