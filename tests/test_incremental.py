"""Incremental variant scoring is exact.

- The conv tower's receptive field computed from the config is the one observed: changing one base
  changes exactly the tower bins `SliceGeometry.reached` names.
- Every slice the geometry places covers every bin its edit reaches, inside the window.
- Scores of edits (SNVs, MNVs, flipped rows) from the base window's tower output plus a recomputed slice
  equal those of the whole model on the edited window (each bin's ALT - REF to 1e-6 of the largest
  prediction; SAD and D2 to float32 rounding, see `close`) for the published model at 131,072 bp and
  Basenji2'' at 32,768 bp, both at full width, plain (and the published one with --rc --shifts 1 0 -1;
  tiny models of both kinds with it in `variants score`), for edits at the
  centre, -500 bp, 10 bp from both window ends, beside an N gap and in a window past a chromosome's
  end. A slice off the 128 bp pooling grid, or one that takes N padding instead of the neighbouring
  sequence, fails these comparisons (each was planted and seen to fail).
- `variants score` gives the same file with and without --no-incremental, clustered or not.
"""

import h5py
import numpy as np
import pytest
from flax import nnx

from jax_basenji.checkpoint import save_model
from jax_basenji.config import ModelConfig
from jax_basenji.data.layout import index_to_one_hot
from jax_basenji.model import build_model
from jax_basenji.predict.core import Ensemble, Predictor
from jax_basenji.variants.__main__ import main as variants_main
from jax_basenji.variants.incremental import MAX_EDIT, IncrementalScorer, SliceGeometry
from jax_basenji.variants.score import statistics
from tests.forward import forward
from tests.interrupt import interrupt_after_first_record, planned_groups

STATS = ("SAD", "REF_SUM", "ALT_SUM", "D2")
HEADER = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"


def random_bases(rng, n):
    return rng.integers(0, 4, n).astype(np.uint8)


def calibrated(cfg: ModelConfig, seed: int):
    """A random model in eval mode whose BatchNorm statistics are those of random sequence (one train-mode
    pass sets them: momentum 0.9): activations of unit scale, so one base moves the output by far more than
    float32 rounding (at initial statistics a tiny model's SADs are 1e-6 of its predictions)."""
    model = build_model(cfg, seed=seed)
    x = index_to_one_hot(random_bases(np.random.default_rng(seed), (2, cfg.seq_length)))
    forward(model, x, cfg.heads[0][0])
    model.eval()
    return model


@pytest.mark.parametrize("preset, length", [("tiny", 16_384), ("tiny-basenji2", 16_384),
                                            ("basenji2-double-prime", 8_192), ("basenji2", 8_192)])
def test_the_towers_receptive_field_is_the_computed_one(preset, length):
    """Full-width towers at a short length: the field depends on kernels and pooling, not the length."""
    cfg = ModelConfig.preset(preset, heads={"human": 2})
    model = build_model(cfg, seed=3)
    model.eval()
    geo = SliceGeometry.of(cfg, length)
    assert (cfg.tower_reach, geo.slice_bins) == (259, 12)
    base = random_bases(np.random.default_rng(0), length)
    positions = [0, 1, 127, 128, 259, 260, 3000, 3071, length - 260, length - 1]
    windows = np.stack([base] + [np.where(np.arange(length) == p, (base + 1) % 4, base) for p in positions])
    tower = np.asarray(nnx.jit(lambda m, x: m.conv_tower(x))(model, index_to_one_hot(windows)))
    for k, p in enumerate(positions):
        first, last = geo.reached(p, p)
        changed = np.flatnonzero((tower[k + 1] != tower[0]).any(-1))
        np.testing.assert_array_equal(changed, np.arange(max(first, 0), min(last, geo.bins - 1) + 1), err_msg=p)


@pytest.mark.parametrize("length", [16_384, 131_072])
def test_every_slice_covers_the_bins_its_edit_reaches(length):
    geo = SliceGeometry.of(ModelConfig(), length)
    for span in (1, 2, MAX_EDIT):
        lo = np.arange(length - span + 1)
        hi = lo + span - 1
        start = geo.slice_start(lo, hi)
        exact = geo.exact(start)  # [edits, slice bins]
        first, last = geo.reached(lo, hi)
        k = np.arange(geo.slice_bins)
        needed = (start[:, None] + k >= first[:, None]) & (start[:, None] + k <= last[:, None])
        assert (start >= 0).all() and (start + geo.slice_bins <= geo.bins).all()
        assert not (needed & ~exact).any()
        # reached bins outside the slice are outside the window
        assert (np.maximum(first, 0) >= start).all() and (np.minimum(last, geo.bins - 1) < start + geo.slice_bins).all()


def edit_case(length, rng):
    """Two base windows (one with a 1 kb N gap, one running 3 kb past a chromosome's end) and edits of
    them: (windows `[2, L]`, [(parent, at, bases, lo, hi, swap)])."""
    a, b = random_bases(rng, length), random_bases(rng, length)
    gap = length // 2 + 2_000
    a[gap:gap + 1_000] = 4
    b[length - 3_000:] = 4
    mid = length // 2 - 1
    edits = []
    for parent, pos, n, swap in ((0, mid, 1, False), (0, mid - 500, 3, True), (0, 10, 1, False),
                                 (0, length - 11, 1, False), (0, gap - 1, 1, False), (1, length - 3_001, 1, False)):
        at = min(pos, length - MAX_EDIT)
        bases = [a, b][parent][at:at + MAX_EDIT].copy()
        bases[pos - at:pos - at + n] = (bases[pos - at:pos - at + n] + 1 + rng.integers(0, 3, n)) % 4
        edits.append((parent, at, bases, pos, pos + n - 1, swap))
    return np.stack([a, b]), edits


def close(got: dict, want: dict, what: str, max_y: float | None = None) -> None:
    """REF_SUM and ALT_SUM, sums of float32 predictions, to their own rounding (1e-6 of the value: 16 ulp);
    SAD and D2 within one float32 ulp of every bin's REF and ALT prediction, eps * sum(|REF| + |ALT|) (the
    predictions are softplus outputs: eps * (REF_SUM + ALT_SUM)). XLA:CPU's rounding depends on a row's
    batch size and position on some CPUs (AVX2: one window at batch 1 and at batch 4 differs by up to
    2 ulp), so the bins an edit cannot reach need not cancel bit for bit in either path. Where that was
    seen (Basenji2'', 131,072 bp) the bound was 5e-3 of the largest |SAD| and the paths 1e-2 of it
    apart; a slice planted 64 bp off the pooling grid (Basenji2'', 32,768 bp) gave SADs 0.087 off. Given
    `max_y`, the largest prediction, each bin's ALT - REF (`[edits, bins, tracks]`) within 1e-6 of it."""
    bound = np.finfo(np.float32).eps * (np.abs(want["REF_SUM"]) + np.abs(want["ALT_SUM"]))
    for s in STATS:
        if s in ("SAD", "D2"):  # |D2 - D2'| <= ||diff - diff'||_2 <= ||diff - diff'||_1: SAD's bound holds
            assert (np.abs(got[s] - want[s]) <= bound).all(), (s, what, np.abs(got[s] - want[s]).max())
        else:
            np.testing.assert_allclose(got[s], want[s], rtol=1e-6, err_msg=(s, what))
    if max_y is not None:
        np.testing.assert_allclose(got["ALT-REF"], want["ALT-REF"], rtol=0, atol=1e-6 * max_y, err_msg=what)


def with_bins(ref, alt):
    """The statistics and each bin's ALT - REF."""
    return {**statistics(ref, alt, STATS), "ALT-REF": alt - ref}


def full_path(predictor, windows, edits, columns):
    """Statistics of each edit from the whole model on its REF and ALT windows."""
    every = [*windows]
    for parent, at, bases, _, _, _ in edits:
        every.append(windows[parent].copy())
        every[-1][at:at + len(bases)] = bases
    every = np.stack(every)
    size = min(4, len(every))
    y = np.concatenate([predictor.padded(every[k:k + size], size) for k in range(0, len(every), size)])[..., columns]
    out = []
    for k, (parent, _, _, _, _, swap) in enumerate(edits):
        ref, alt = y[parent], y[len(windows) + k]
        out.append(with_bins(alt[None], ref[None]) if swap else with_bins(ref[None], alt[None]))
    return {s: np.concatenate([np.asarray(o[s]) for o in out]) for s in out[0]}, np.abs(y).max()


def incremental_path(predictor, windows, edits, columns, length):
    scorer = IncrementalScorer(predictor, length, columns, with_bins)
    base = scorer.base(windows)
    fields = [np.asarray(f) for f in zip(*edits)]
    return scorer.edits(base, *fields)


@pytest.mark.parametrize("preset, length", [("basenji2", 131_072), ("basenji2-double-prime", 32_768)])
def test_edits_equal_the_full_path_of_full_width_models(preset, length):
    cfg = ModelConfig.preset(preset, heads={"human": 64}, seq_length=length)
    model = calibrated(cfg, seed=7)
    rng = np.random.default_rng(1)
    windows, edits = edit_case(length, rng)
    columns = [0, 5, 33, 63]
    if preset == "basenji2":
        # centre, -500 bp (a 3 bp flipped MNV), 10 bp from both ends, beside the gap, past a chromosome's end
        cases = [(Ensemble(), windows, edits)]
    else:  # centre, 10 bp from the start, beside the gap: one batch of 4 windows; then an ensemble of 4
        # members (the same code for every model; shifts both ways) on one window, 10 bp from its end (the
        # start in its rc members)
        cases = [(Ensemble(), windows[:1], [edits[k] for k in (0, 2, 4)]),
                 (Ensemble(rc=True, shifts=(1, -1), shift_pad=0.0), windows[:1], [edits[3]])]
    for ensemble, base, chosen in cases:
        predictor = Predictor(model, "human", ensemble, n_value=0.25)
        want, max_y = full_path(predictor, base, chosen, columns)
        got = incremental_path(predictor, base, chosen, columns, length)
        close(got, want, str(ensemble), max_y)



@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny model and a genome with an N gap; a sorted VCF with SNVs close together, an MNV, flipped rows,
    indels, a multi-allelic record, and SNVs beside the gap and a chromosome's end."""
    root = tmp_path_factory.mktemp("incremental")
    rng = np.random.default_rng(4)
    c1 = list("".join(rng.choice(list("ACGT"), 40_000)))
    c1[20_000:20_500] = "N" * 500
    c2 = "".join(rng.choice(list("ACGT"), 12_000))
    c1 = "".join(c1)
    (root / "g.fa").write_text(f">chr1\n{c1}\n>chr2\n{c2}\n")
    save_model(str(root / "ckpt"), calibrated(ModelConfig.tiny(heads={"human": 4}), seed=5))

    def other(b, k=1):
        return "ACGT"[("ACGT".index(b) + k) % 4]

    rows = []
    for pos in (9_000, 9_001, 9_300, 11_000, 12_345, 14_000, 19_990, 20_501, 25_000):
        rows.append(("chr1", pos, c1[pos - 1], other(c1[pos - 1])))
    rows += [("chr1", 26_000, c1[25_999:26_002], "".join(other(b) for b in c1[25_999:26_002])),  # MNV
             ("chr1", 27_000, other(c1[26_999]), c1[26_999]),  # flipped
             ("chr1", 27_500, c1[27_499], f"{other(c1[27_499])},{other(c1[27_499], 2)}"),
             ("chr1", 28_000, c1[27_999:28_003], c1[27_999]),  # deletion
             ("chr1", 28_100, c1[28_099], c1[28_099] + "GA"),  # insertion
             ("chr2", 11_990, c2[11_989], other(c2[11_989])), ("chr2", 11_999, c2[11_998], other(c2[11_998]))]
    (root / "in.vcf").write_text(HEADER + "".join(f"{c}\t{p}\tv{i}\t{r}\t{a}\t.\t.\t.\n"
                                                  for i, (c, p, r, a) in enumerate(rows)))
    return root


def score(root, out, *flags):
    return variants_main(["score", "--checkpoint", str(root / "ckpt"), "--head", "human", "--vcf",
                          str(root / "in.vcf"), "--fasta", str(root / "g.fa"), "--output", str(out), "--no-progress",
                          "--float32", "--stats", *STATS, "--batch-size", "3", *flags])


@pytest.mark.parametrize("flags", [(), ("--cluster-pct", "0.3"),
                                   ("--cluster-pct", "0.3", "--rc", "--shifts", "1", "0", "-1")])
def test_variants_score_is_the_same_with_and_without_incremental(world, tmp_path, flags):
    assert score(world, tmp_path / "full.h5", "--no-incremental", *flags) == 0
    assert score(world, tmp_path / "inc.h5", *flags) == 0
    with h5py.File(tmp_path / "full.h5") as a, h5py.File(tmp_path / "inc.h5") as b:
        assert list(a["snp"][:]) == list(b["snp"][:]) and len(a["snp"]) == 17
        np.testing.assert_array_equal(a["flipped"][:], b["flipped"][:])
        close({s: b[s][:] for s in STATS}, {s: a[s][:] for s in STATS}, str(flags))


def test_clustered_windows_are_centred_on_the_cluster(world, tmp_path):
    """--cluster-pct 0.3 on 16,384 bp: rows within 4,915 bp of a cluster's first share its window, centred
    on (first + last position) // 2 (baskerville's SNPCluster.delimit); each cluster's REF is one
    window, so its REF_SUM is the same for all its SNVs; a one-row cluster's window is the row's own."""
    assert score(world, tmp_path / "c.h5", "--cluster-pct", "0.3") == 0
    assert score(world, tmp_path / "u.h5") == 0
    with h5py.File(tmp_path / "c.h5") as c, h5py.File(tmp_path / "u.h5") as u:
        ids = [s.decode() for s in c["snp"][:]]
        ref = dict(zip(ids, c["REF_SUM"][:]))
        np.testing.assert_array_equal(ref["v0"], ref["v3"])  # 9,000 .. 12,345: one cluster
        np.testing.assert_allclose(ref["v0"], window_sums(world, "chr1", (9_000 + 12_345) // 2 - 8_192), rtol=1e-5)
        assert not np.array_equal(ref["v0"], ref["v5"])  # 14,000 starts the next
        alone = ids.index("v14")  # chr2 11,990 and 11,999: one cluster of two
        np.testing.assert_array_equal(c["REF_SUM"][alone], c["REF_SUM"][alone + 1])
        indel = ids.index("v13")  # indels keep their own centred windows
        np.testing.assert_allclose(c["SAD"][indel], u["SAD"][indel], rtol=0, atol=1e-5 * np.abs(u["SAD"][:]).max())


def window_sums(root, chrom, start):
    """`[tracks]` the model's prediction of chrom:[start, start + 16,384), summed over bins."""
    from jax_basenji import checkpoint
    from jax_basenji.data.genome import Genome

    model, meta = checkpoint.load_model(str(root / "ckpt"))
    predictor = Predictor(model, "human", Ensemble(), checkpoint.n_value_of(meta))
    return predictor(Genome(str(root / "g.fa")).fetch(chrom, start, start + 16_384)[None]).sum(1)[0]


def test_a_clustered_run_resumes_to_the_same_file(world, tmp_path, monkeypatch):
    """Killed after its first group of 3 clusters (9,000-12,345; 14,000; 19,990-20,501: 8 rows) was
    recorded, it continues at the next cluster, whose window is the uninterrupted run's."""
    from jax_basenji.variants import score as score_module

    assert score(world, tmp_path / "straight.h5", "--cluster-pct", "0.3") == 0
    monkeypatch.setattr(score_module, "RECORD_EVERY_S", 0.0)
    interrupt_after_first_record(monkeypatch, score_module)
    with pytest.raises(KeyboardInterrupt):
        score(world, tmp_path / "resumed.h5", "--cluster-pct", "0.3")
    monkeypatch.undo()
    firsts = planned_groups(monkeypatch)
    assert score(world, tmp_path / "resumed.h5", "--cluster-pct", "0.3", "--resume") == 0
    assert firsts[0] == 8
    with h5py.File(tmp_path / "straight.h5") as a, h5py.File(tmp_path / "resumed.h5") as b:
        for k in a:
            np.testing.assert_array_equal(a[k][:], b[k][:], err_msg=k)
