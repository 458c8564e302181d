"""`evaluate ism`: each (position, base) score is the change of the mean prediction measured directly
with `predict` on the mutated window; outputs, logos, a region outside the genome, and attribution at N."""

import jax
import numpy as np
import pytest

from jax_basenji.checkpoint import save_model
from jax_basenji.config import ModelConfig
from jax_basenji.evaluate.__main__ import main as evaluate_main
from jax_basenji.model import build_model
from jax_basenji.predict import main as predict_main

L = 16_384


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("ism")
    seq = "".join(np.random.default_rng(3).choice(list("ACGT"), 20_000))
    (root / "g.fa").write_text(">chr1\n" + seq + "\n")
    save_model(str(root / "ckpt"), build_model(ModelConfig.tiny(heads={"human": 4}), seed=7))
    return {"root": root, "seq": seq, "ckpt": str(root / "ckpt"), "fasta": str(root / "g.fa")}


def test_ism_scores_are_direct_prediction_differences(world, tmp_path):
    start, end = 10_000, 10_006
    assert evaluate_main(["ism", "--checkpoint", world["ckpt"], "--head", "human", "--fasta", world["fasta"],
                          "--region", f"chr1:{start}-{end}", "--tracks", "1,2", "--bins", "center",
                          "--output", str(tmp_path / "ism"), "--no-progress"]) == 0
    scores = np.load(tmp_path / "ism" / "ism.npy")
    assert scores.shape == (6, 4)
    seq, w_start = world["seq"], (start + end) // 2 - L // 2
    window = np.frombuffer(seq[w_start:w_start + L].encode(), np.uint8)
    ref = np.stack([window == ord(b) for b in "ACGT"], axis=-1).astype(np.float32)
    i = start + 2 - w_start  # the third position, mutated to each base
    batch = np.repeat(ref[None], 4, axis=0)
    batch[:, i] = np.eye(4, dtype=np.float32)
    np.save(tmp_path / "x.npy", np.concatenate([ref[None], batch]))
    assert predict_main(["--checkpoint", world["ckpt"], "--head", "human", "--input", str(tmp_path / "x.npy"),
                         "--output", str(tmp_path / "y.npy"), "--no-progress"]) == 0
    y = np.load(tmp_path / "y.npy").astype(np.float64)
    centre = slice(y.shape[1] // 2 - 1, y.shape[1] // 2 + 2)
    mean = y[:, centre][:, :, [1, 2]].mean(axis=(1, 2))
    np.testing.assert_allclose(scores[2], mean[1:] - mean[0], rtol=1e-4, atol=1e-7)
    assert scores[2, "ACGT".index(seq[start + 2])] == 0  # the reference base itself
    lines = (tmp_path / "ism" / "ism.bedgraph").read_text().splitlines()
    assert lines[1].split("\t")[:3] == ["chr1", str(start), str(start + 1)] and len(lines) == 7
    # per position the mean change over the 3 other bases
    other = np.arange(4) != "ACGT".index(seq[start + 2])
    assert float(lines[3].split("\t")[3]) == pytest.approx((mean[1:] - mean[0])[other].mean(), rel=1e-4, abs=1e-7)
    for k, line in enumerate(lines[1:]):
        other = np.arange(4) != "ACGT".index(seq[start + k])
        assert float(line.split("\t")[3]) == pytest.approx(scores[k][other].mean(), rel=1e-5)
    assert (tmp_path / "ism" / "ism_logo.png").stat().st_size > 3000


def test_attribution_writes_a_logo_and_refuses_a_region_outside_the_genome(world, tmp_path, capsys):
    base = ["attribution", "--checkpoint", world["ckpt"], "--head", "human", "--fasta", world["fasta"],
            "--output", str(tmp_path / "attr"), "--no-progress"]
    assert evaluate_main([*base, "--region", "chr1:9000-9050"]) == 0
    assert (tmp_path / "attr" / "attribution_logo.png").stat().st_size > 3000
    capsys.readouterr()
    assert evaluate_main([*base, "--region", "chr1:19900-20100"]) == 2
    assert "chr1 has 20000 bp; the region must lie inside it" in capsys.readouterr().err
    assert evaluate_main([*base, "--region", "chr1:0-17000"]) == 2  # longer than the input window
    assert "the model's input window holds 16384" in capsys.readouterr().err


def test_attribution_fills_n_as_the_checkpoint_records(world, tmp_path):
    """A model trained with N = 0.25 (a seed .pt's encoding) sees 0.25 at the N of the window, and the
    input x gradient there is 0.25 x the gradient of each base."""
    seq = world["seq"][:9_000] + "N" * 300 + world["seq"][9_300:]
    (tmp_path / "n.fa").write_text(">chr1\n" + seq + "\n")
    model = build_model(ModelConfig.tiny(heads={"human": 4}), seed=7)
    save_model(str(tmp_path / "ckpt"), model, extra={"n_value": 0.25})
    start, end = 9_100, 9_200  # N from 9,000 to 9,300, in the window's centre
    assert evaluate_main(["attribution", "--checkpoint", str(tmp_path / "ckpt"), "--head", "human", "--fasta",
                          str(tmp_path / "n.fa"), "--region", f"chr1:{start}-{end}", "--tracks", "1,2",
                          "--bins", "center", "--output", str(tmp_path / "attr"), "--no-progress"]) == 0
    got = np.load(tmp_path / "attr" / "attribution.npy")
    w_start = (start + end) // 2 - L // 2
    window = np.frombuffer(seq[w_start:w_start + L].encode(), np.uint8)
    x = np.stack([window == ord(b) for b in "ACGT"], axis=-1).astype(np.float32)
    x[window == ord("N")] = 0.25
    model.eval()
    b = model.cfg.output_bins(L) // 2

    def mean_prediction(x):  # --bins center, --tracks 1,2
        return model(x[None], "human")[0, b - 1:b + 2][:, [1, 2]].mean()

    want = np.asarray(jax.jit(jax.grad(mean_prediction))(x) * x)
    at_n = want[9_000 - w_start:9_300 - w_start]
    assert (np.abs(at_n) > 1e-5 * np.abs(want).max()).mean() > 0.9  # N contributes, in every channel
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max())


def test_a_logo_of_a_short_region_shows_genome_positions_and_its_whole_title(tmp_path, monkeypatch):
    """Positions near 96 Mb read as themselves, not as small numbers plus a "+9.62e7" offset; the title fits."""
    from jax_basenji.evaluate import logo

    figures = []
    monkeypatch.setattr(logo, "save_png", lambda fig, path: (figures.append(fig), path)[1])
    title = "finetune: in-silico mutagenesis over chr11:96205000-96205012, mean of tracks ATAC over the centre bins"
    logo.logo_png(np.random.default_rng(0).normal(size=(12, 4)), 96_205_000, str(tmp_path / "l.png"), title, "score")
    fig = figures[0]
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.xaxis.get_major_formatter().get_offset() == ""
    assert all(96_205_000 <= float(t.get_text().replace("\u2212", "-")) <= 96_205_012
               for t in ax.get_xticklabels() if t.get_text() and ax.get_xlim()[0] <= t.get_position()[0] <= ax.get_xlim()[1])
    box, canvas = ax.title.get_window_extent(), fig.bbox
    assert box.x0 >= canvas.x0 - 1 and box.x1 <= canvas.x1 + 1  # not clipped at the figure's edges
