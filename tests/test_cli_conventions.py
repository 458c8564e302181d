"""Conventions every prediction command shares: one --tracks syntax, --devices, and a run that fits in one
batch computes only its own rows."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from jax_basenji.checkpoint import save_model
from jax_basenji.config import ModelConfig
from jax_basenji.evaluate.__main__ import parse_args as evaluate_args
from jax_basenji.model import build_model
from jax_basenji.predict import core
from jax_basenji.predict.cli import main as predict_main
from jax_basenji.tracks import select_tracks

TARGETS = [{"identifier": f"T{i}", "description": f"{'CAGE' if i < 2 else 'ATAC'}:t{i}"} for i in range(4)]


def test_tracks_are_taken_space_or_comma_separated():
    names = [t["identifier"] for t in TARGETS]
    assert select_tracks(names, ["0,3"], TARGETS) == select_tracks(names, ["0", "3"], TARGETS) == [0, 3]
    assert select_tracks(names, ["T1,ATAC"], TARGETS) == [1, 2, 3]
    for what in ("ism", "attribution"):  # these took only the comma form
        args = evaluate_args([what, "--checkpoint", "c", "--head", "h", "--output", "o", "--fasta", "f",
                              "--region", "chr1:0-10", "--tracks", "0", "2"])
        assert args.tracks == ["0", "2"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("conventions")
    rng = np.random.default_rng(0)
    (root / "g.fa").write_text(">chr1\n" + "".join(rng.choice(list("ACGT"), 30_000)) + "\n")
    save_model(str(root / "ckpt"), build_model(ModelConfig.tiny(heads={"human": 4}), seed=1))
    return root


def test_a_run_that_fits_in_one_batch_computes_only_its_rows(world, tmp_path, monkeypatch):
    """One region with --batch-size 4 is one window through the model, not four (3 of them empty)."""
    shapes, real = [], core.Predictor.__call__
    monkeypatch.setattr(core.Predictor, "__call__", lambda self, batch, **kw: (shapes.append(batch.shape[0]),
                                                                                real(self, batch, **kw))[1])
    (tmp_path / "r.bed").write_text("chr1\t10000\t11000\ta\n")
    argv = ["regions", "--checkpoint", str(world / "ckpt"), "--head", "human", "--fasta", str(world / "g.fa"),
            "--bed", str(tmp_path / "r.bed"), "--batch-size", "4", "--no-progress"]
    assert predict_main([*argv, "--output", str(tmp_path / "one.h5")]) == 0
    assert shapes == [1]
    (tmp_path / "r.bed").write_text("chr1\t10000\t11000\ta\n" * 5)  # two batches: one compiled shape
    shapes.clear()
    assert predict_main([*argv, "--output", str(tmp_path / "five.h5")]) == 0
    assert shapes == [4, 4]


DEVICES = textwrap.dedent("""
    import sys
    import numpy as np
    from jax_basenji.checkpoint import load_model
    from jax_basenji.errors import InputError
    from jax_basenji.predict.core import Predictor

    model, _ = load_model(sys.argv[1])
    x = np.eye(4, dtype=np.float32)[np.random.default_rng(0).integers(0, 4, (3, model.cfg.seq_length))]
    one = Predictor(model, "human", devices=1)(x)
    four = Predictor(model, "human", devices=4)
    seen = []
    forward = four._forward
    four._forward = lambda state, b: (seen.append(len(b.sharding.device_set)), forward(state, b))[1]
    y = four(x)  # 3 rows: padded to 4, one per device
    assert seen == [4] and y.shape == one.shape, (seen, y.shape)
    np.testing.assert_allclose(y, one, rtol=1e-5, atol=1e-6 * np.abs(one).max())
    try:
        Predictor(model, "human", devices=5)
    except InputError as e:
        print(e)
""")


def test_devices_picks_the_first_n_and_a_short_batch_still_uses_all_of_them(world):
    env = {"XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", DEVICES, str(world / "ckpt")], capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "--devices 5: this process has 4 cpu device(s)"
