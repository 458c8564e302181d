"""`python -m jax_basenji.evaluate` reproduces the seed's analyses (docs/seed_reference.md).

A small world: a random two-chromosome genome, bigWig coverage binned over
16,384 bp regions that overlap (so one TSS lies in two regions), and an
untrained `tiny` model with one 4-track head (2 CAGE, a TF ChIP, a histone
ChIP). Every figure is recomputed here from the seed's definition with numpy /
scipy / sklearn on the same model outputs, not with the evaluation code.
"""

import json
import os

import numpy as np
import pyBigWig
import pytest
from scipy.stats import pearsonr, zscore

from jax_basenji import checkpoint
from jax_basenji.config import ModelConfig
from jax_basenji.data import BasenjiSource
from jax_basenji.data.__main__ import main as data_main
from jax_basenji.data.store import convert
from jax_basenji.evaluate.__main__ import main as evaluate_main
from jax_basenji.model import build_model
from tests.forward import forward

SEQ, CROP, POOL = 16_384, 1_024, 128
BINS = (SEQ - 2 * CROP) // POOL  # 112 target bins per region
CHROMS = {"chr1": 80_000, "chr2": 60_000}
# chr1:0-16384 and chr1:8192-24576 overlap: their target spans share chr1:9216-15360.
REGIONS = [("chr1", 0, "train"), ("chr1", 8192, "train"), ("chr1", 30_000, "train"), ("chr2", 0, "train"),
           ("chr1", 50_000, "valid"), ("chr2", 20_000, "valid"), ("chr1", 62_000, "test"), ("chr2", 40_000, "test")]
BIGWIGS = {"cage": ["a", "b"], "chip": ["CTCF", "H3K27ac"]}
PROG = ["python", "-m", "jax_basenji.evaluate"]


def _write_table(path, header, rows):
    with open(path, "w") as f:
        f.write("\t".join(header) + "\n")
        f.writelines("\t".join(map(str, r)) + "\n" for r in rows)
    return str(path)


def _read_table(path):
    lines = [line.rstrip("\n").split("\t") for line in open(path)]
    return lines[0], lines[1:]


def _summary(out, what):
    return json.load(open(os.path.join(out, f"{what}_summary.json")))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("seed_eval")
    rng = np.random.default_rng(0)
    genome = {c: rng.integers(0, 4, n) for c, n in CHROMS.items()}
    fasta = str(root / "genome.fa")
    with open(fasta, "w") as f:
        for c, idx in genome.items():
            text = np.frombuffer(b"ACGT", np.uint8)[idx].tobytes().decode()
            f.write(f">{c}\n" + "".join(text[i:i + 60] + "\n" for i in range(0, len(text), 60)))
    for assay, names in BIGWIGS.items():
        os.makedirs(root / assay)
        for name in names:
            bw = pyBigWig.open(str(root / assay / f"{name}.bw"), "w")
            bw.addHeader(list(CHROMS.items()))
            for c, n in CHROMS.items():
                bw.addEntries(c, 0, values=rng.gamma(0.5, 2.0, n // 16).tolist(), span=16, step=16)
            bw.close()
    bed = str(root / "regions.bed")
    with open(bed, "w") as f:
        f.writelines(f"{c}\t{s}\t{s + SEQ}\t{sub}\n" for c, s, sub in REGIONS)
    groups = [arg for assay, names in BIGWIGS.items()
              for arg in ("--bigwig", *(str(root / assay / f"{n}.bw") for n in names))]
    assert data_main(["tracks", "--regions", bed, *groups, "--fasta", fasta, "--output", str(root / "tracks"),
                      "--species", "mouse", "--no-progress"]) == 0
    store = str(root / "store")
    convert(str(root / "tracks"), store, progress=False)
    ckpt = str(root / "model")
    checkpoint.save_model(ckpt, build_model(ModelConfig.tiny(heads=(("mouse", 4),)), 0))
    model, _ = checkpoint.load_model(ckpt)
    return {"root": root, "genome": genome, "fasta": fasta, "store": store, "ckpt": ckpt, "model": model}


def _one_hot(genome, chrom, start, end):
    return np.eye(4, dtype=np.float32)[genome[chrom][start:end]]


def test_tss_from_regions_sums_3_bins_and_adds_up_each_gene_across_regions(world, tmp_path):
    """The seed's gene dictionary: per TSS row and region holding it, bins b-1..b+1 (b = offset // 128
    in the cropped region, cut at the region's edges) of predictions and targets, added up per gene id."""
    genes = [("gA", "chr1", 12_000, "+"),   # in regions 0 and 1 (the overlap)
             ("gB", "chr1", CROP + 40, "-"),  # bin 0 of region 0: bins 0..1 only
             ("gC", "chr1", 15_359, "+"),   # last bin (111) of region 0: bins 110..111; bin 47 of region 1
             ("gD", "chr1", 33_000, "+"), ("gD", "chr1", 40_000, "+"),  # two TSS rows of one gene
             ("gE", "chr2", 8_000, "-"),
             ("gF", "chr1", 100, "+")]      # in a cropped edge only: not found
    path = _write_table(tmp_path / "genes.tsv", ["gene_id", "chrom", "tss", "strand"], genes)
    src = BasenjiSource(world["store"], "mouse", "train")
    seqs = np.stack([src[i]["sequence"] for i in range(len(src))]).astype(np.float32)
    pred = np.asarray(forward(world["model"], seqs, "mouse"), np.float64)
    target = np.stack([src[i]["target"] for i in range(len(src))]).astype(np.float64)

    for width in (3, 5):
        out = str(tmp_path / f"w{width}")
        argv = ["tss", "--checkpoint", world["ckpt"], "--data", world["store"], "--species", "mouse", "--subset",
                "train", "--genes", path, "--head", "mouse", "--tss-bins", str(width), "--output", out,
                "--no-progress"]
        assert evaluate_main(argv) == 0
        want_p, want_t, hits = {}, {}, 0
        for gid, chrom, tss, _ in genes:
            for k, r in enumerate(src.regions):
                b = (tss - r.start - CROP) // POOL
                if r.chrom == chrom and r.start + CROP <= tss < r.end - CROP:
                    window = slice(max(b - width // 2, 0), b + width // 2 + 1)
                    want_p[gid] = want_p.get(gid, 0) + pred[k, window].sum(0)
                    want_t[gid] = want_t.get(gid, 0) + target[k, window].sum(0)
                    hits += 1
        assert list(want_p) == ["gA", "gB", "gC", "gD", "gE"] and hits == 8
        header, rows = _read_table(os.path.join(out, "tss_predictions.tsv"))
        _, trows = _read_table(os.path.join(out, "tss_targets.tsv"))
        assert [r[0] for r in rows] == list(want_p) and [r[4] for r in rows] == ["train"] * 5
        got_p = np.array([[float(v) for v in r[5:]] for r in rows])
        got_t = np.array([[float(v) for v in r[5:]] for r in trows])
        np.testing.assert_allclose(got_p, np.stack(list(want_p.values())), rtol=1e-5)
        np.testing.assert_allclose(got_t, np.stack(list(want_t.values())), rtol=1e-6)
        s = _summary(out, "tss")
        assert (s["tss_hits"], s["tss_bins"], s["genes"]) == (8, width, 5)
        assert s["command"] == PROG + argv and s["checkpoint"] == os.path.abspath(world["ckpt"])
        lp, lt = np.log1p(np.stack(list(want_p.values()))), np.log1p(np.stack(list(want_t.values())))
        per_track = [pearsonr(lp[:, t], lt[:, t])[0] for t in range(4)]
        per_gene = [pearsonr(a, b)[0] for a, b in zip(zscore(lp), zscore(lt))]
        assert s["per_track_r"] == pytest.approx(np.mean(per_track), abs=1e-5)
        assert s["per_gene_r"] == pytest.approx(np.mean(per_gene), abs=1e-5)
        assert s["by_subset"]["train"]["genes"] == 5


def test_tss_from_genome_keeps_each_genes_first_row_and_correlates_per_subset(world, tmp_path):
    """One TSS per gene (pandas drop_duplicates(subset="gene_id") keeps the first row), the 3 centre
    bins of a window centred on it; R per track and per gene (tracks z-scored across genes), all on
    log(x+1), for all genes and for each subset's genes on their own."""
    rng = np.random.default_rng(5)
    subsets = ["train"] * 7 + ["valid"] * 5 + ["test"] * 6
    genes = [(f"g{i}", c, int(rng.integers(SEQ, CHROMS[c] - SEQ)), "+-"[i % 2], sub)
             for i, (c, sub) in enumerate(zip(rng.choice(list(CHROMS), len(subsets)), subsets))]
    genes.insert(4, ("g2", "chr2", 30_000, "+", "train"))  # later rows of known genes: dropped
    genes.append(("g13", "chr1", 20_000, "-", "test"))
    path = _write_table(tmp_path / "genes.tsv", ["gene_id", "chrom", "tss", "strand", "subset"], genes)
    expr = rng.gamma(2.0, 3.0, (len(subsets), 4))
    expr_path = _write_table(tmp_path / "expr.tsv", ["gene_id", "t0", "t1", "t2", "t3"],
                             [(f"g{i}", *(f"{v:.6f}" for v in row)) for i, row in enumerate(expr)])
    out = str(tmp_path / "tss")
    argv = ["tss", "--checkpoint", world["ckpt"], "--fasta", world["fasta"], "--genes", path, "--head", "mouse",
            "--targets", expr_path, "--output", out, "--no-progress"]
    assert evaluate_main(argv) == 0

    first = {}
    for g in genes:
        first.setdefault(g[0], g)
    kept = list(first.values())
    assert len(kept) == len(subsets) and kept[2][2] != 30_000
    windows = np.stack([_one_hot(world["genome"], c, t - SEQ // 2, t + SEQ // 2) for _, c, t, _, _ in kept])
    pred = np.asarray(forward(world["model"], windows, "mouse"), np.float64)
    want = pred[:, BINS // 2 - 1: BINS // 2 + 2].sum(1)
    _, rows = _read_table(os.path.join(out, "tss_predictions.tsv"))
    assert [r[0] for r in rows] == list(first)
    np.testing.assert_allclose(np.array([[float(v) for v in r[5:]] for r in rows]), want, rtol=1e-5)

    observed = np.round(expr, 6)
    s = _summary(out, "tss")
    assert s["gene_rows"] == len(genes) and s["genes"] == len(kept)
    _, track_rows = _read_table(os.path.join(out, "tss_per_track_by_subset.tsv"))
    _, gene_rows = _read_table(os.path.join(out, "tss_per_gene_by_subset.tsv"))
    for name, figures in [("all", s), *s["by_subset"].items()]:
        idx = [i for i, g in enumerate(kept) if name in ("all", g[4])]
        lp, lo = np.log1p(want[idx]), np.log1p(observed[idx])
        per_track = [pearsonr(lp[:, t], lo[:, t])[0] for t in range(4)]
        per_gene = [pearsonr(a, b)[0] for a, b in zip(zscore(lp), zscore(lo))]
        assert figures["per_track_r"] == pytest.approx(np.mean(per_track), abs=1e-5), name
        assert figures["per_gene_r"] == pytest.approx(np.mean(per_gene), abs=1e-5), name
        if name != "all":
            assert figures["genes"] == len(idx)
            np.testing.assert_allclose([float(r[2]) for r in track_rows if r[0] == name], per_track, atol=1e-6)
            assert [r[1] for r in gene_rows if r[0] == name] == [kept[i][0] for i in idx]
            np.testing.assert_allclose([float(r[2]) for r in gene_rows if r[0] == name], per_gene, atol=1e-6)
    assert list(s["by_subset"]) == ["train", "valid", "test"]


def test_ridge_z_scores_cell_types_for_per_gene_r_and_sweeps_alpha(tmp_path):
    """The seed's notebook: log(x+1) CAGE predictions standardised with the training genes' mean and
    std; one Ridge per cell type on log(x+1) expression; per-gene R across cell types after z-scoring
    each cell type across the test genes; the same for alpha 0, 0.5, 1, 2, 3."""
    rng = np.random.default_rng(7)
    subsets = ["train"] * 30 + ["valid"] * 10 + ["test"] * 20
    pred = rng.gamma(2.0, 5.0, (len(subsets), 5))
    y_log = np.log1p(pred) @ rng.uniform(-0.5, 1.0, (5, 4)) + rng.normal(0, 0.4, (len(subsets), 4)) + 3
    matrix = _write_table(tmp_path / "tss.tsv", ["gene_id", "chrom", "tss", "strand", "subset", *"ABCDE"],
                          [(f"g{i}", "chr1", 1000 * i, "+", s, *(f"{v:.6f}" for v in p))
                           for i, (s, p) in enumerate(zip(subsets, pred))])
    expr = _write_table(tmp_path / "expr.tsv", ["gene_id", "c0", "c1", "c2", "c3"],
                        [(f"g{i}", *(f"{v:.6f}" for v in np.expm1(row))) for i, row in enumerate(y_log)])
    out = str(tmp_path / "ridge")
    argv = ["ridge", "--predictions", matrix, "--expression", expr, "--tracks", "A", "B", "C", "D", "E",
            "--output", out]
    assert evaluate_main(argv) == 0

    x = np.log1p(np.round(pred, 6))
    y = np.log1p(np.expm1(y_log).round(6))
    train = np.array([s in ("train", "valid") for s in subsets])
    test = np.array([s == "test" for s in subsets])
    xs = (x - x[train].mean(0)) / x[train].std(0)

    def ridge(alpha):  # closed form, intercept unpenalised; alpha 0 is least squares
        a, am = xs[train], xs[train].mean(0)
        w = np.linalg.lstsq((a - am).T @ (a - am) + alpha * np.eye(5), (a - am).T @ (y[train] - y[train].mean(0)),
                            rcond=None)[0]
        y_hat = xs[test] @ w + (y[train].mean(0) - am @ w)
        per_cell = [pearsonr(y_hat[:, c], y[test, c])[0] for c in range(4)]
        per_gene = [pearsonr(a, b)[0] for a, b in zip(zscore(y_hat), zscore(y[test]))]
        return per_cell, per_gene

    per_cell, per_gene = ridge(1.0)
    _, gene_rows = _read_table(os.path.join(out, "ridge_per_gene.tsv"))
    np.testing.assert_allclose([float(r[1]) for r in gene_rows], per_gene, atol=1e-6)
    s = _summary(out, "ridge")
    assert s["per_cell_type_r"] == pytest.approx(np.mean(per_cell), abs=1e-6)
    assert s["per_gene_r"] == pytest.approx(np.mean(per_gene), abs=1e-6)
    assert s["command"] == PROG + argv and s["checkpoint"] is None
    header, sweep_rows = _read_table(os.path.join(out, "ridge_alpha_sweep.tsv"))
    assert header == ["alpha", "per_cell_type_r", "per_gene_r"]
    assert [float(r[0]) for r in sweep_rows] == [0, 0.5, 1, 2, 3]
    for row, record in zip(sweep_rows, s["alpha_sweep"]):
        cell, gene = ridge(float(row[0]))
        assert (float(row[1]), float(row[2])) == pytest.approx((np.mean(cell), np.mean(gene)), abs=1e-6)
        assert (record["per_cell_type_r"], record["per_gene_r"]) == pytest.approx((np.mean(cell), np.mean(gene)))
    assert os.path.getsize(os.path.join(out, "ridge_alpha_sweep.png")) > 1000

    assert evaluate_main([*argv[:-1], str(tmp_path / "grid"), "--alpha-grid", "0.25", "10"]) == 0
    assert [r["alpha"] for r in _summary(str(tmp_path / "grid"), "ridge")["alpha_sweep"]] == [0.25, 10.0]


def test_assays_split_chip_into_histone_and_tf():
    """Histone ChIP: a histone mark or variant named in the description (H3K..., H4K..., H2A..., H2B...,
    H3F3A, plain H3); every other CHIP: track is TF ChIP."""
    from jax_basenji.tracks import select_tracks
    from jax_basenji.metrics import assays

    want = {"CHIP:H3K27ac:liver": "CHIP_HISTONE", "CHIP:H4K20me1:K562": "CHIP_HISTONE",
            "CHIP:H2AFZ:GM12878": "CHIP_HISTONE", "CHIP:H2BK5ac:H1": "CHIP_HISTONE",
            "CHIP:H3F3A:HepG2": "CHIP_HISTONE", "CHIP:H3K27Ac:x": "CHIP_HISTONE",
            "CHIP:.:batch1_chrom1_LoVo_H3K4me1_Rabbit_PassedQC / LoVo / colon adenocarcinoma": "CHIP_HISTONE",
            "CHIP:CTCF:H1-hESC": "CHIP_TF", "CHIP:HDAC2:K562": "CHIP_TF", "CHIP:HNF4A:liver": "CHIP_TF",
            "CHIP:.:batch1_chrom1_LoVo_ARNT_Mouse_PassedQC / LoVo": "CHIP_TF",
            "CHIP:synthetic human track 3": "CHIP_TF", "CAGE:liver": "CAGE", "DNASE:x": "DNASE", "": "UNKNOWN"}
    targets = [{"identifier": f"t{i}", "description": d} for i, d in enumerate(want)]
    assert assays(targets) == list(want.values())
    names = [t["identifier"] for t in targets]
    histone = [i for i, k in enumerate(want.values()) if k == "CHIP_HISTONE"]
    tf = [i for i, k in enumerate(want.values()) if k == "CHIP_TF"]
    assert select_tracks(names, ["CHIP"], targets) == sorted(histone + tf)
    assert select_tracks(names, ["chip_histone"], targets) == histone
    assert select_tracks(names, ["CHIP_TF", "CAGE"], targets) == sorted(tf + [12])


def test_positions_first_sequences_and_assays_by_chip_kind(world, tmp_path):
    """--max-sequences N: Pearson R per track over all bins of the subset's first N sequences, in
    store order; assays.tsv averages it per assay, ChIP split into CHIP_HISTONE and CHIP_TF."""
    out = str(tmp_path / "pos")
    argv = ["positions", "--checkpoint", world["ckpt"], "--data", world["store"], "--species", "mouse",
            "--subset", "train", "--head", "mouse", "--max-sequences", "3", "--batch-size", "2", "--output", out,
            "--no-progress"]
    assert evaluate_main(argv) == 0
    src = BasenjiSource(world["store"], "mouse", "train")
    assert len(src) == 4
    seqs = np.stack([_one_hot(world["genome"], r.chrom, r.start, r.end) for r in src.regions[:3]])
    x = np.asarray(forward(world["model"], seqs, "mouse"), np.float64).reshape(-1, 4)
    y = np.stack([src[i]["target"] for i in range(3)]).astype(np.float64).reshape(-1, 4)
    want = [pearsonr(x[:, t], y[:, t])[0] for t in range(4)]
    _, rows = _read_table(os.path.join(out, "tracks.tsv"))
    assert [(r[2], r[3]) for r in rows] == [("CAGE:a", "CAGE"), ("CAGE:b", "CAGE"), ("CHIP:CTCF", "CHIP_TF"),
                                            ("CHIP:H3K27ac", "CHIP_HISTONE")]
    np.testing.assert_allclose([float(r[4]) for r in rows], want, atol=1e-5)
    _, assay_rows = _read_table(os.path.join(out, "assays.tsv"))
    got = {r[0]: float(r[2]) for r in assay_rows}
    assert got == pytest.approx({"CAGE": np.mean(want[:2]), "CHIP_TF": want[2], "CHIP_HISTONE": want[3]}, abs=1e-5)
    s = _summary(out, "positions")
    assert (s["sequences"], s["positions"]) == (3, 3 * BINS)
    assert s["command"] == PROG + argv and s["checkpoint"] == os.path.abspath(world["ckpt"])


def test_attribution_summary_records_the_command_and_absolute_checkpoint(world, tmp_path):
    relative = os.path.relpath(world["ckpt"])
    out = str(tmp_path / "attr")
    argv = ["attribution", "--checkpoint", relative, "--head", "mouse", "--fasta", world["fasta"],
            "--region", "chr1:30000-30500", "--tracks", "0", "--output", out]
    assert evaluate_main(argv) == 0
    s = _summary(out, "attribution")
    assert s["command"] == PROG + argv and s["checkpoint"] == os.path.abspath(world["ckpt"])


@pytest.mark.parametrize("argv, message", [
    (["tss", "--checkpoint", "{ckpt}", "--head", "mouse", "--data", "{store}", "--species", "mouse",
      "--genes", "{genes}", "--tss-bins", "2"], "--tss-bins 2: a window is an odd number of bins"),
    (["tss", "--checkpoint", "{ckpt}", "--head", "mouse", "--data", "{store}", "--species", "mouse",
      "--subset", "bogus", "--genes", "{genes}"], "has no subset 'bogus': it has test, train, valid"),
    (["ridge", "--predictions", "{matrix}", "--expression", "{expr}", "--tracks", "A", "--test-subset", "bogus"],
     "unknown subset 'bogus'"),
    (["ridge", "--predictions", "{matrix}", "--expression", "{expr}", "--tracks", "A", "--alpha-grid", "x"],
     "--alpha-grid 'x': a number >= 0"),
    (["positions", "--checkpoint", "{ckpt}", "--head", "mouse", "--data", "{store}", "--species", "mouse",
      "--max-sequences", "0"], "--max-sequences 0: at least 1"),
], ids=["tss-bins", "store-subset", "ridge-subset", "alpha-grid", "max-sequences"])
def test_bad_input_gives_one_line_errors(world, tmp_path, capsys, argv, message):
    genes = _write_table(tmp_path / "genes.tsv", ["gene_id", "chrom", "tss", "strand"], [("g", "chr1", 12_000, "+")])
    matrix = _write_table(tmp_path / "m.tsv", ["gene_id", "chrom", "tss", "strand", "subset", "A"],
                          [(f"g{i}", "chr1", i, "+", s, i) for i, s in enumerate(["train", "train", "test", "test"])])
    expr = _write_table(tmp_path / "e.tsv", ["gene_id", "c"], [(f"g{i}", i) for i in range(4)])
    fill = {"ckpt": world["ckpt"], "store": world["store"], "genes": genes, "matrix": matrix, "expr": expr}
    argv = [a.format(**fill) for a in argv]
    assert evaluate_main([*argv, "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
