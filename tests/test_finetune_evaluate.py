"""Fine-tuning and evaluation end to end on synthetic data (issue 5).

Pretrain `tiny` briefly; bin small bigWig files (written here with pyBigWig)
into ATAC and RNA stores; fine-tune a new head with the old heads frozen; then
evaluate across positions, at TSS, by ridge regression and by attribution.
Every figure is checked against an independent numpy / scipy / sklearn / torch
computation on the same predictions.
"""

import contextlib
import io
import json
import os

import jax
import numpy as np
import pyBigWig
import pytest
import torch
from scipy.stats import pearsonr, spearmanr

from jax_basenji import checkpoint, finetune
from jax_basenji.config import ModelConfig
from jax_basenji.data import BasenjiSource
from jax_basenji.data.__main__ import main as data_main
from jax_basenji.data.genome import Genome
from jax_basenji.data.layout import index_to_one_hot, read_bed_file, read_targets_file
from jax_basenji.data.store import convert
from jax_basenji.data.synth import SynthConfig, synth
from jax_basenji.evaluate.__main__ import main as evaluate_main
from jax_basenji.model import build_model
from jax_basenji.train import train
from jax_basenji.train_config import TrainConfig
from tests.forward import forward

SEQ = 16_384
CROP = SEQ // 16
TRACKS = {"atac": ["ectoderm", "mesoderm"], "rna": ["ectoderm", "endoderm", "mesoderm"]}


def _leaves(tree, prefix=()):
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _leaves(v, (*prefix, k))
    else:
        yield prefix, np.asarray(tree)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft")
    basenji = str(root / "basenji")
    # train_helpers.make_store's track counts: the pre-training below shares the other tests' programs
    synth(basenji, {"human": 8, "mouse": 4}, SynthConfig(
        seq_length=SEQ, examples=(("train", 16), ("valid", 4), ("test", 8)), records_per_file=8), progress=False)
    store = str(root / "store")
    convert(basenji, store, progress=False)
    tc = TrainConfig(data=store, workdir=str(root / "pretrain"), optimizer="adam", lr=1e-2, momentum=0.9,
                     steps=4, batch_size=4, eval_every=0, eval_batches=1, checkpoint_every=4)
    pretrained = train(ModelConfig.tiny(), tc, progress=False)["model"]

    # bigWigs over the synthetic mouse genome: a value per 16 bp step; the last RNA
    # file lacks one chromosome (zeros and a warning, not a crash).
    fasta = os.path.join(basenji, "mm10.ml.fa")
    genome = Genome(fasta)
    import pyfaidx

    chroms = {c: len(s) for c, s in pyfaidx.Fasta(fasta).items()}
    truth = {}
    rng = np.random.default_rng(1)
    for assay, names in TRACKS.items():
        os.makedirs(root / assay)
        for k, name in enumerate(names):
            path = str(root / assay / f"{name}.bw")
            bw = pyBigWig.open(path, "w")
            keep = [c for c in chroms if not (assay == "rna" and k == len(names) - 1 and c == "chr1")]
            bw.addHeader([(c, chroms[c]) for c in keep])
            per_bp = {}
            for c in keep:
                steps = rng.gamma(0.5, 2.0, size=chroms[c] // 16 + 1).astype(np.float32)
                per_bp[c] = np.repeat(steps, 16)[: chroms[c]]
                bw.addEntries(c, 0, values=steps[: chroms[c] // 16].tolist(), span=16, step=16)
            bw.close()
            truth[(assay, name)] = per_bp
    stores = {}
    for assay in TRACKS:
        out = str(root / f"tracks_{assay}")
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert data_main(["tracks", "--regions", os.path.join(basenji, "mouse", "sequences.bed"),
                              "--bigwig", *sorted(str(p) for p in (root / assay).glob("*.bw")),
                              "--fasta", fasta, "--output", out, "--species", "mouse", "--no-progress"]) == 0
        # A missing chromosome: one clean line per track and chromosome, not a Python warning echo.
        lines = err.getvalue().splitlines()
        assert lines == ([f"warning: {root / assay / 'mesoderm.bw'}: no chromosome 'chr1'; those bins are zeros"]
                         if assay == "rna" else [])
        stores[assay] = str(root / f"store_{assay}")
        convert(out, stores[assay], progress=False)
    return {"root": root, "basenji": basenji, "fasta": fasta, "genome": genome, "pretrained": pretrained,
            "truth": truth, "stores": stores}


def test_tracks_are_bigwig_sums_over_128bp_bins(world):
    regions = read_bed_file(os.path.join(world["basenji"], "mouse", "sequences.bed"))
    for assay, names in TRACKS.items():
        src = BasenjiSource(world["stores"][assay], "mouse", "train")
        assert [t["description"] for t in src.targets] == [f"{assay.upper()}:{n}" for n in sorted(names)]
        for i in (0, 5):
            r = [x for x in regions if x.subset == "train"][i]
            assert src.regions[i] == r
            example = src[i]
            np.testing.assert_array_equal(example["sequence"], index_to_one_hot(
                world["genome"].fetch(r.chrom, r.start, r.end)))
            for t, name in enumerate(sorted(names)):
                per_bp = world["truth"][(assay, name)].get(r.chrom)
                want = (np.zeros((SEQ - 2 * CROP) // 128, np.float32) if per_bp is None
                        else per_bp[r.start + CROP: r.end - CROP].reshape(-1, 128).sum(axis=1))
                # stored as float16 (the Basenji format): the float32 sums, rounded once
                np.testing.assert_array_equal(example["target"][:, t], want.astype(np.float16))


@pytest.fixture(scope="module")
def tuned(world):
    workdir = str(world["root"] / "finetune")
    stores = world["stores"]
    assert finetune.main(["--pretrained", world["pretrained"], "--data", f"atac={stores['atac']}",
                          f"rna={stores['rna']}", "--workdir", workdir, "--modality-weight", "rna=2",
                          "--log1p", "rna", "--steps", "4", "--batch-size", "4", "--optimizer", "adam",
                          "--lr", "1e-2", "--eval-every", "4", "--eval-batches", "1", "--no-progress"]) == 0
    return os.path.join(workdir, "model")


def test_finetune_trains_the_new_head_and_trunk_and_freezes_old_heads(world, tuned):
    before, cfg0, _ = checkpoint.load_arrays(world["pretrained"])
    after, cfg, meta = checkpoint.load_arrays(tuned)
    assert cfg.head_tracks == {**cfg0.head_tracks, "finetune": 5}
    old, new = dict(_leaves(before)), dict(_leaves(after))
    for path, value in old.items():
        if path[0] == "heads":
            np.testing.assert_array_equal(new[path], value, err_msg=str(path))  # frozen old heads
    assert any(not np.array_equal(new[p], v) for p, v in old.items() if p[-1] == "kernel" and p[0] != "heads")
    init = build_model(cfg, 0)  # the new head's random initialisation (train seed 0)
    assert not np.array_equal(np.asarray(init.heads["finetune"].linear.kernel[...]),
                              new[("heads", "finetune", "linear", "kernel")])
    tc = meta["train_config"]
    assert tc["modalities"] == [["atac", 2, 1.0, False], ["rna", 3, 2.0, True]]
    # the frozen heads keep the tables of the pretrained checkpoint; the new head records its stores'
    _, _, meta0 = checkpoint.load_arrays(world["pretrained"])
    assert {h: meta["head_targets"][h] for h in ("human", "mouse")} == meta0["head_targets"]
    assert [t["description"] for t in meta["head_targets"]["finetune"]] == [
        f"{a.upper()}:{n}" for a in ("atac", "rna") for n in sorted(TRACKS[a])]
    records = [json.loads(line) for line in open(os.path.join(os.path.dirname(tuned), "metrics.jsonl"))]
    valid = [r for r in records if r["split"] == "valid"][-1]
    # The joint loss is the seed's (w * L_rna + L_atac) / 2.
    assert valid["loss"] == pytest.approx((2 * valid["loss_rna"] + valid["loss_atac"]) / 2, rel=1e-5)
    assert set(valid["pearson_r_by_assay"]) == {"ATAC", "RNA"}


def test_finetuned_model_converts_to_a_seed_finetuned_pt(world, tuned, tmp_path):
    from jax_basenji.convert import main as convert_main
    from torch_ref import Basenji2, FineTunedBasenji2, load_seed_state_dict

    pt = str(tmp_path / "finetuned.pt")
    assert convert_main(["jax-to-torch", "--input", tuned, "--output", pt]) == 0
    model, _ = checkpoint.load_model(tuned)
    wrapper = FineTunedBasenji2(Basenji2(model.cfg.replace(heads=model.cfg.heads[:2])), tracks=5)
    load_seed_state_dict(wrapper, torch.load(pt, weights_only=True))  # strict: the seed's wrapper keys
    wrapper.eval()
    x = np.eye(4, dtype=np.float32)[np.random.default_rng(0).integers(0, 4, (2, SEQ))]
    with torch.no_grad():
        want = wrapper(torch.from_numpy(x)).numpy()
    got = np.asarray(forward(model, x, "finetune"))
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


@pytest.fixture(scope="module")
def head_only(world):
    """A trunk-frozen fine-tuning of a 2-track ATAC head: its model directory."""
    workdir = str(world["root"] / "finetune_head_only")
    assert finetune.main(["--pretrained", world["pretrained"], "--data", world["stores"]["atac"],
                          "--workdir", workdir, "--freeze", "trunk", "--steps", "2", "--batch-size", "4",
                          "--eval-batches", "1", "--no-progress"]) == 0
    return os.path.join(workdir, "model")


def test_freeze_trunk_trains_only_the_new_head(world, head_only):
    before, _, _ = checkpoint.load_arrays(world["pretrained"])
    after, cfg, _ = checkpoint.load_arrays(head_only)
    assert cfg.head_tracks["finetune"] == 2
    new = dict(_leaves(after))
    for path, value in _leaves(before):  # params and BatchNorm statistics alike
        np.testing.assert_array_equal(new[path], value, err_msg=str(path))


def test_a_seed_finetuned_pt_continues_training(world, tmp_path):
    from torch_ref import Basenji2, FineTunedBasenji2

    torch.manual_seed(0)
    wrapper = FineTunedBasenji2(Basenji2(ModelConfig.tiny(variant="basenji2-prime")), tracks=2)
    pt = str(tmp_path / "seed_finetuned.pt")
    torch.save(wrapper.state_dict(), pt)
    assert finetune.main(["--pretrained", pt, "--variant", "basenji2-prime", "--widths", "tiny",
                          "--data", world["stores"]["atac"],
                          "--workdir", str(tmp_path / "ft"), "--steps", "1", "--batch-size", "4",
                          "--eval-batches", "1", "--no-progress"]) == 0
    after, cfg, _ = checkpoint.load_arrays(str(tmp_path / "ft" / "model"))
    assert cfg.variant == "basenji2-prime" and cfg.head_tracks["finetune"] == 2
    w0 = wrapper.state_dict()["new_head.head.0.weight"].numpy().T
    assert not np.array_equal(np.asarray(after["heads"]["finetune"]["linear"]["kernel"]), w0)


def _predict_examples(ckpt, source, head):
    model, _ = checkpoint.load_model(ckpt)
    seqs = np.stack([source[i]["sequence"] for i in range(len(source))]).astype(np.float32)
    return np.asarray(forward(model, seqs, head)), np.stack([source[i]["target"] for i in range(len(source))])


def test_evaluate_positions_matches_scipy(world, tuned, head_only, tmp_path):
    out = str(tmp_path / "positions")
    assert evaluate_main(["positions", "--checkpoint", tuned, "--data", world["stores"]["rna"], "--species",
                          "mouse", "--subset", "test", "--head", "finetune", "--output", out,
                          "--no-progress"]) == 2  # the RNA store has 3 tracks, the head 5: refused
    src = BasenjiSource(world["stores"]["atac"], "mouse", "test")
    # Evaluate the ATAC-only head of a trunk-frozen fine-tuning against the ATAC store.
    ckpt = head_only
    assert evaluate_main(["positions", "--checkpoint", ckpt, "--data", world["stores"]["atac"], "--species",
                          "mouse", "--subset", "test", "--head", "finetune", "--output", out, "--batch-size", "3",
                          "--no-progress"]) == 0
    pred, target = _predict_examples(ckpt, src, "finetune")
    x, y = pred.reshape(-1, 2).astype(np.float64), target.reshape(-1, 2).astype(np.float64)
    rows = [line.rstrip("\n").split("\t") for line in open(os.path.join(out, "tracks.tsv"))]
    assert rows[0] == ["index", "identifier", "description", "assay", "pearson_r", "r2", "spearman_r"]
    for t, row in enumerate(rows[1:]):
        assert float(row[4]) == pytest.approx(pearsonr(x[:, t], y[:, t])[0], abs=1e-5)
        r2 = 1 - ((y[:, t] - x[:, t]) ** 2).sum() / ((y[:, t] - y[:, t].mean()) ** 2).sum()
        assert float(row[5]) == pytest.approx(r2, abs=1e-4)
        assert float(row[6]) == pytest.approx(spearmanr(x[:, t], y[:, t])[0], abs=1e-5)  # all positions sampled
    assert os.path.getsize(os.path.join(out, "pearson_r_hist.png")) > 0
    assert open(os.path.join(out, "assays.tsv")).read().startswith("assay\ttracks\tpearson_r")

    # The joint head on both stores, RNA compared as log(x+1) as it was trained.
    out2 = str(tmp_path / "joint")
    assert evaluate_main(["positions", "--checkpoint", tuned, "--data", world["stores"]["atac"],
                          world["stores"]["rna"], "--species", "mouse", "--subset", "test", "--head", "finetune",
                          "--log1p-assay", "RNA", "--output", out2, "--no-progress"]) == 0
    rna = BasenjiSource(world["stores"]["rna"], "mouse", "test")
    pred, _ = _predict_examples(tuned, rna, "finetune")
    _, rna_target = _predict_examples(world["pretrained"], rna, "mouse")
    x = pred.reshape(-1, 5)[:, 2:].astype(np.float64)
    y = np.log1p(rna_target.reshape(-1, 3).astype(np.float64))
    rows = [line.rstrip("\n").split("\t") for line in open(os.path.join(out2, "tracks.tsv"))][1:]
    assert [r[3] for r in rows] == ["ATAC", "ATAC", "RNA", "RNA", "RNA"]
    for t, row in enumerate(rows[2:]):
        assert float(row[4]) == pytest.approx(pearsonr(x[:, t], y[:, t])[0], abs=1e-5)


@pytest.fixture(scope="module")
def genes(world):
    """Gene table: TSSs inside the mouse regions' target spans, with their subsets."""
    regions = read_bed_file(os.path.join(world["basenji"], "mouse", "sequences.bed"))
    rows = []
    for k, r in enumerate(regions):
        for j, offset in enumerate((CROP + 300, SEQ // 2 + 77, SEQ - CROP - 500)):
            rows.append((f"g{k}_{j}", r.chrom, r.start + offset, "+-"[j % 2], r.subset))
    path = str(world["root"] / "genes.tsv")
    with open(path, "w") as f:
        f.write("gene_id\tchrom\ttss\tstrand\tsubset\n")
        f.writelines("\t".join(map(str, row)) + "\n" for row in rows)
    return path, rows


def test_evaluate_tss_windows_and_correlations(world, genes, tmp_path):
    path, rows = genes
    rows = rows[:10]
    small = str(tmp_path / "genes.tsv")
    with open(small, "w") as f:
        f.write("gene_id\tchrom\ttss\tstrand\tsubset\n")
        f.writelines("\t".join(map(str, row)) + "\n" for row in rows)
    # The checkpoint records its heads' tracks (also as targets_<head>.txt): columns are paired by name.
    names = [r["identifier"] for r in read_targets_file(os.path.join(world["pretrained"], "targets_mouse.txt"))]
    expr = str(tmp_path / "expr.tsv")
    rng = np.random.default_rng(0)
    with open(expr, "w") as f:
        f.write("gene_id\t" + "\t".join(names) + "\n")
        f.writelines(f"{r[0]}\t" + "\t".join(f"{v:.4f}" for v in rng.gamma(2, 3, len(names))) + "\n" for r in rows)
    out = str(tmp_path / "tss")
    assert evaluate_main(["tss", "--checkpoint", world["pretrained"], "--fasta", world["fasta"], "--genes", small,
                          "--head", "mouse", "--targets", expr, "--output", out, "--batch-size", "4",
                          "--no-progress"]) == 0
    model, _ = checkpoint.load_model(world["pretrained"])
    windows = np.stack([index_to_one_hot(world["genome"].fetch(c, t - SEQ // 2, t + SEQ // 2))
                        for _, c, t, _, _ in rows]).astype(np.float32)
    pred = np.asarray(forward(model, windows, "mouse"))
    bins = pred.shape[1]
    want = pred[:, bins // 2 - 1: bins // 2 + 2].sum(axis=1)
    table = [line.rstrip("\n").split("\t") for line in open(os.path.join(out, "tss_predictions.tsv"))]
    assert table[0] == ["gene_id", "chrom", "tss", "strand", "subset", *names]
    written = np.array([[float(v) for v in r[5:]] for r in table[1:]])  # 8 significant digits
    np.testing.assert_allclose(written, want, rtol=1e-5)
    # The correlations are checked on the predictions the command wrote: z-scoring a track whose TSS
    # predictions barely vary across genes (this untrained model) magnifies fp32 rounding differences
    # between batchings of the same model far beyond the correlation's own precision.
    observed = np.array([[float(v) for v in line.split("\t")[1:]] for line in open(expr).readlines()[1:]])
    per_track = [line.split("\t") for line in open(os.path.join(out, "tss_per_track.tsv")).readlines()[1:]]
    for t, (_, _, r) in enumerate(per_track):
        assert float(r) == pytest.approx(pearsonr(np.log1p(written[:, t]), np.log1p(observed[:, t]))[0], abs=1e-5)
    z = lambda m: (m - m.mean(0)) / m.std(0)  # noqa: E731
    per_gene = [line.split("\t") for line in open(os.path.join(out, "tss_per_gene.tsv")).readlines()[1:]]
    for g, (_, _, r) in enumerate(per_gene):
        want_r = pearsonr(z(np.log1p(written))[g], z(np.log1p(observed))[g])[0]
        assert float(r) == pytest.approx(want_r, abs=1e-5)
    for png in ("tss_per_track_hist.png", "tss_per_gene_hist.png", "tss_scatter.png"):
        assert os.path.getsize(os.path.join(out, png)) > 0


def test_evaluate_tss_warns_once_of_genes_past_a_chromosome_end(world, tmp_path, capsys):
    chrom = world["genome"].chromosomes()[0]
    size = world["genome"].chrom_length(chrom)
    genes = tmp_path / "genes.tsv"  # the last base is inside; the next one and one further out are not
    genes.write_text("gene_id\tchrom\ttss\tstrand\n"
                     f"last\t{chrom}\t{size - 1}\t+\nend\t{chrom}\t{size}\t+\nfar\t{chrom}\t{size + 5000}\t-\n")
    out = tmp_path / "tss"
    assert evaluate_main(["tss", "--checkpoint", world["pretrained"], "--fasta", world["fasta"], "--genes",
                          str(genes), "--head", "mouse", "--output", str(out), "--no-progress"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning")]
    assert warnings == [f"warning: 2 gene(s) with a TSS outside their chromosome, predicted on N there (first: end "
                        f"at {chrom}:{size}; {chrom} has {size} bp)"]
    assert len((out / "tss_predictions.tsv").read_text().splitlines()) == 4  # predicted all the same


def test_evaluate_tss_from_regions_and_ridge(world, genes, tmp_path):
    path, rows = genes
    out = str(tmp_path / "tss_regions")
    for subset in ("train", "test"):
        assert evaluate_main(["tss", "--checkpoint", world["pretrained"], "--data",
                              os.path.join(str(world["root"]), "store"), "--species", "mouse", "--subset", subset,
                              "--genes", path, "--head", "mouse", "--output", f"{out}_{subset}",
                              "--no-progress"]) == 0
    # Region mode: the predicted and stored bins around each TSS bin (b-1..b+1, the seed's 3), summed.
    src = BasenjiSource(os.path.join(str(world["root"]), "store"), "mouse", "test")
    pred, target = _predict_examples(world["pretrained"], src, "mouse")
    table = [line.rstrip("\n").split("\t") for line in open(f"{out}_test/tss_predictions.tsv")][1:]
    targets = [line.rstrip("\n").split("\t") for line in open(f"{out}_test/tss_targets.tsv")][1:]
    assert len(table) == 3 * len(src)
    for k, (row, trow) in enumerate(zip(table, targets)):
        region, j = divmod(k, 3)
        b = (int(row[2]) - src.regions[region].start - CROP) // 128
        np.testing.assert_allclose([float(v) for v in row[5:]], pred[region, b - 1: b + 2].sum(0), rtol=1e-5)
        np.testing.assert_allclose([float(v) for v in trow[5:]],
                                   target[region, b - 1: b + 2].astype(np.float64).sum(0), rtol=1e-6)

    # Ridge: all genes' predictions, expression of 2 cell types, train on train, test on test.
    matrix = str(tmp_path / "all_tss.tsv")
    with open(matrix, "w") as f:
        lines = [open(f"{out}_{s}/tss_predictions.tsv").read().splitlines() for s in ("train", "test")]
        f.write("\n".join(lines[0] + lines[1][1:]) + "\n")
    genes_m = [line.split("\t") for line in open(matrix).read().splitlines()[1:]]
    x = np.log1p(np.array([[float(v) for v in r[5:]] for r in genes_m]))
    rng = np.random.default_rng(3)
    y_log = 1 + x @ rng.uniform(0.5, 1.5, size=(x.shape[1], 2)) + rng.uniform(0, 0.3, size=(len(x), 2))
    expr = str(tmp_path / "cells.tsv")
    with open(expr, "w") as f:
        f.write("gene_id\tcellA\tcellB\n")
        f.writelines(f"{r[0]}\t{np.expm1(v[0]):.6f}\t{np.expm1(v[1]):.6f}\n" for r, v in zip(genes_m, y_log))
    targets_txt = os.path.join(world["basenji"], "mouse", "targets.txt")
    ridge_out = str(tmp_path / "ridge")
    assert evaluate_main(["ridge", "--predictions", matrix, "--expression", expr, "--tracks", "CAGE",
                          "--targets-txt", targets_txt, "--train-subsets", "train", "--test-subset", "test",
                          "--alpha", "0.5", "--output", ridge_out]) == 0
    cage = [i for i, line in enumerate(open(targets_txt).read().splitlines()[1:]) if "CAGE" in line.upper()]
    assert cage
    train = np.array([r[4] == "train" for r in genes_m])
    test = np.array([r[4] == "test" for r in genes_m])
    xc = x[:, cage]
    xs = (xc - xc[train].mean(0)) / np.where(xc[train].std(0) > 0, xc[train].std(0), 1)
    y = np.log1p(np.expm1(y_log).round(6))
    coef_rows = [line.split("\t") for line in open(os.path.join(ridge_out, "ridge_coefficients.tsv"))][1:]
    cell_rows = [line.split("\t") for line in open(os.path.join(ridge_out, "ridge_per_cell_type.tsv"))][1:]
    for c in range(2):  # closed-form ridge with an unpenalised intercept
        a, b = xs[train], y[train, c]
        am, bm = a.mean(0), b.mean()
        w = np.linalg.solve((a - am).T @ (a - am) + 0.5 * np.eye(len(cage)), (a - am).T @ (b - bm))
        np.testing.assert_allclose([float(v) for v in coef_rows[c][3:]], w, rtol=1e-4, atol=1e-6)
        y_hat = xs[test] @ w + (bm - am @ w)
        assert float(cell_rows[c][1]) == pytest.approx(pearsonr(y_hat, y[test, c])[0], abs=1e-5)
    assert os.path.getsize(os.path.join(ridge_out, "ridge_scatter.png")) > 0

    # --alpha cv: leave-one-out over the grid, per cell type, as sklearn's RidgeCV picks it.
    from sklearn.linear_model import RidgeCV

    from jax_basenji.evaluate.ridge import CV_ALPHAS

    cv_out = str(tmp_path / "ridge_cv")
    assert evaluate_main(["ridge", "--predictions", matrix, "--expression", expr, "--tracks", "CAGE",
                          "--targets-txt", targets_txt, "--alpha", "cv", "--output", cv_out]) == 0
    cv_rows = [line.split("\t") for line in open(os.path.join(cv_out, "ridge_coefficients.tsv"))][1:]
    for c in range(2):
        want = RidgeCV(alphas=CV_ALPHAS).fit(xs[train], y[train, c])
        assert float(cv_rows[c][1]) == pytest.approx(want.alpha_, rel=1e-7)  # TSV: 8 significant digits
        np.testing.assert_allclose([float(v) for v in cv_rows[c][3:]], want.coef_, rtol=1e-4, atol=1e-6)


def test_gtf_genes_give_0_based_tss_on_either_strand(tmp_path):
    """GTF is 1-based and inclusive: + strand TSS = start - 1, - strand TSS = end - 1 (0-based)."""
    from jax_basenji.evaluate.tss import read_genes

    gtf = tmp_path / "genes.gtf"
    gtf.write_text("#!genome-build test\n"
                   'chr1\ttest\tgene\t101\t200\t.\t+\t.\tgene_id "gA"; gene_name "A";\n'
                   'chr1\ttest\texon\t101\t150\t.\t+\t.\tgene_id "gA";\n'
                   'chr2\ttest\tgene\t301\t400\t.\t-\t.\tgene_id "gB";\n')
    genes = read_genes(str(gtf))
    assert [(g.gene_id, g.chrom, g.tss, g.strand) for g in genes] == [("gA", "chr1", 100, "+"), ("gB", "chr2", 399, "-")]
    gff = tmp_path / "genes.gff3"
    gff.write_text("chr1\ttest\tgene\t11\t20\t.\t+\t.\tID=gene:gC;Name=C\n")
    assert [(g.gene_id, g.tss) for g in read_genes(str(gff))] == [("gC", 10)]


def test_attribution_equals_torch_input_x_gradient(world, tmp_path):
    from jax_basenji.convert import torch_state_from_arrays
    from torch_ref import Basenji2

    region = read_bed_file(os.path.join(world["basenji"], "mouse", "sequences.bed"))[0]
    out = str(tmp_path / "attr")
    assert evaluate_main(["attribution", "--checkpoint", world["pretrained"], "--fasta", world["fasta"],
                          "--region", f"{region.chrom}:{region.start}-{region.end}", "--head", "mouse",
                          "--tracks", "0,2", "--bins", "40-49", "--output", out]) == 0
    got = np.load(os.path.join(out, "attribution.npy"))
    arrays, cfg, _ = checkpoint.load_arrays(world["pretrained"])
    tm = Basenji2(cfg)
    tm.load_state_dict(torch_state_from_arrays(arrays, cfg))
    tm.eval()
    x = torch.tensor(index_to_one_hot(world["genome"].fetch(region.chrom, region.start, region.end))[None],
                     dtype=torch.float64, requires_grad=True)
    tm.double()(x, "mouse")[0, 40:50][:, [0, 2]].mean().backward()
    want = (x.grad * x).detach().numpy()[0]
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max())
    bedgraph = open(os.path.join(out, "attribution.bedgraph")).read().splitlines()
    assert len(bedgraph) == SEQ + 1 and bedgraph[1].split("\t")[:2] == [region.chrom, str(region.start)]
    assert os.path.getsize(os.path.join(out, "attribution.png")) > 0


@pytest.mark.parametrize("argv, message", [
    (["positions", "--head", "nope", "--data", "{store}", "--species", "mouse"], "unknown head 'nope'"),
    (["tss", "--head", "mouse", "--fasta", "{fasta}", "--genes", "{bad_genes}"], "lacks the column(s) ['tss']"),
    (["tss", "--head", "mouse", "--fasta", "{fasta}", "--genes", "{chrz_genes}"], "chromosome 'chrZ' is not in"),
    (["tss", "--head", "mouse", "--fasta", "{fasta}", "--genes", "{short_row_genes}"],
     "short.tsv line 3: 3 tab-separated fields, the header has 4"),
])
def test_bad_input_gives_one_line_errors(world, tmp_path, capsys, argv, message):
    bad = tmp_path / "bad.tsv"
    bad.write_text("gene_id\tchrom\tstrand\ng1\tchr1\t+\n")
    chrz = tmp_path / "chrz.tsv"
    chrz.write_text("gene_id\tchrom\ttss\tstrand\ng1\tchrZ\t100\t+\n")
    short = tmp_path / "short.tsv"  # a row missing a field: its values would shift into other columns
    short.write_text("gene_id\tchrom\ttss\tstrand\ng1\tchr1\t100\t+\ng2\tchr1\t+\n")
    fill = {"store": os.path.join(str(world["root"]), "store"), "fasta": world["fasta"], "bad_genes": str(bad),
            "chrz_genes": str(chrz), "short_row_genes": str(short)}
    argv = [a.format(**fill) for a in argv]
    assert evaluate_main([argv[0], "--checkpoint", world["pretrained"], *argv[1:], "--output",
                          str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_finetune_track_count_mismatch_is_refused(world, head_only, tmp_path, capsys):
    # The trunk-frozen run's `finetune` head has 2 tracks; the RNA store has 3.
    assert finetune.main(["--pretrained", head_only, "--data",
                          world["stores"]["rna"], "--workdir", str(tmp_path / "x"), "--steps", "1",
                          "--no-progress"]) == 2
    assert "head 'finetune' has 2 tracks; the data have 3" in capsys.readouterr().err
    jax.clear_caches()


@pytest.mark.parametrize("source", ["fasta", "data"])
def test_an_interrupted_tss_run_resumes_to_identical_tables(world, genes, tmp_path, monkeypatch, capsys, source):
    """A kill after the first batch: the run is not restarted silently, --resume with other settings is
    refused, and --resume writes the tables of an uninterrupted run byte for byte."""
    from tests.interrupt import interrupt_after_first_batch

    path, rows = genes
    src = (["--fasta", world["fasta"]] if source == "fasta" else
           ["--data", os.path.join(str(world["root"]), "store"), "--species", "mouse"])

    def tss(out, *flags):
        return evaluate_main(["tss", "--checkpoint", world["pretrained"], *src, "--genes", path, "--head", "mouse",
                              "--output", str(tmp_path / out), "--batch-size", "2", "--no-progress", *flags])

    assert tss("straight") == 0
    interrupt_after_first_batch(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        tss("resumed")
    monkeypatch.undo()
    assert json.loads((tmp_path / "resumed" / ".partial" / "progress.json").read_text())["done"] == 2
    capsys.readouterr()
    assert tss("resumed") == 2  # never restarted silently
    assert tss("resumed", "--resume", "--tss-bins", "5") == 2
    assert "other settings (tss_bins: 3 then, 5 now)" in capsys.readouterr().err
    assert tss("resumed", "--resume") == 0
    assert not (tmp_path / "resumed" / ".partial").exists()
    tables = ["tss_predictions.tsv"] + (["tss_targets.tsv"] if source == "data" else [])
    for name in tables:
        assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "straight" / name).read_bytes()


def test_tss_hits_are_the_tss_rows_inside_each_regions_target_span():
    """Bisecting sorted TSS per chromosome finds exactly what a scan of every region x gene pair finds."""
    from jax_basenji.data.layout import Region
    from jax_basenji.evaluate.tss import Gene, tss_hits

    rng = np.random.default_rng(5)
    genes = [Gene(f"g{k % 150}", f"chr{rng.integers(1, 4)}", int(rng.integers(0, 20_000)), "+")
             for k in range(400)]
    genes.append(Gene("edge", "chr1", 1000 + 64, "+"))  # the first target bp of the region at 1000
    regions = [Region(f"chr{rng.integers(1, 5)}", int(s), int(s) + 2048, "test") for s in rng.integers(0, 19_000, 60)]
    regions.append(Region("chr1", 1000, 3048, "test"))
    crop, span = 64, 2048 - 128
    brute = {}
    for r_idx, r in enumerate(regions):
        found = [(g.tss - r.start - crop, i) for i, g in enumerate(genes)
                 if g.chrom == r.chrom and 0 <= g.tss - r.start - crop < span]
        if found:
            brute[r_idx] = found
    assert tss_hits(genes, regions, crop, span) == brute
    assert (0, len(genes) - 1) in brute[len(regions) - 1]
