"""The README's "Fine-tuning and evaluation" walkthrough, run exactly as written (issue 16).

The commands are read from README.md's code block and run in-process, in a working
directory holding the files they name, all synthetic: a tiny Basenji2'' as `basenji2.pt`,
a mouse genome and its Basenji regions, ATAC and RNA bigWigs named after the *same* three
cell types, the genes as GTF and TSV, and a pseudobulk RNA table. Only sizes change
(`SIZES`): fewer steps, tiny widths, regions that exist in the synthetic genome. Every number
a step reports is checked against an independent numpy / scipy / sklearn computation.
"""

import contextlib
import glob
import importlib
import io
import json
import os
import shlex
import shutil

import jax
import numpy as np
import pyBigWig
import pytest
import torch
from scipy.stats import pearsonr

from jax_basenji import checkpoint
from jax_basenji.config import ModelConfig
from jax_basenji.data import BasenjiSource
from jax_basenji.data.genome import Genome
from jax_basenji.data.layout import index_to_one_hot, read_bed_file, read_targets_file
from jax_basenji.data.synth import SynthConfig, synth
from tests.forward import forward

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
SEQ = 16_384
CROP = SEQ // 16
CELLS = ["Ectoderm", "Endoderm", "Mesoderm"]
ATTR_REGION, ISM_REGION = "chr11:96200000-96210000", "chr11:96205000-96205200"


def readme_commands() -> list[str]:
    """The `python -m jax_basenji...` commands of the walkthrough's code block, continuation lines joined."""
    text = open(README).read().split("## Fine-tuning and evaluation", 1)[1]
    block = text.split("```bash", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    return [line.strip() for line in block.splitlines() if line.strip().startswith("python -m jax_basenji.")]


def run(command: str, sizes: dict[str, str]) -> tuple[int, str]:
    """(exit code, stderr) of one README command, run as `python -m` runs it, with `sizes` substituted."""
    for old, new in sizes.items():
        command = command.replace(old, new)
    argv = shlex.split(command)
    args = [match for a in argv[3:] for match in (sorted(glob.glob(a)) if "*" in a else [a])]
    module = importlib.import_module(argv[2])  # what `python -m` runs: the module's or package's main
    main = getattr(module, "main", None) or importlib.import_module(argv[2] + ".__main__").main
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(args)
    return code, err.getvalue()


def write_bigwigs(root: str, chroms: dict[str, int], rng) -> None:
    for assay in ("atac", "rna"):
        os.makedirs(os.path.join(root, assay))
        for cell in CELLS:
            bw = pyBigWig.open(os.path.join(root, assay, f"{cell}.bw"), "w")
            bw.addHeader(list(chroms.items()))
            for c, size in chroms.items():
                steps = rng.gamma(0.5, 2.0, size=size // 16).astype(np.float32)
                bw.addEntries(c, 0, values=steps.tolist(), span=16, step=16)
            bw.close()


def write_genes(root: str, regions) -> list[tuple[str, str, int, str, str]]:
    """Two genes per region, TSS inside its target span: genes.gtf (1-based) and genes.tsv (0-based)."""
    genes = []
    for k, r in enumerate(regions):
        for j, offset in enumerate((CROP + 700, SEQ // 2 + 77)):
            genes.append((f"g{k}_{j}", r.chrom, r.start + offset, "+-"[j], r.subset))
    with open(os.path.join(root, "genes.gtf"), "w") as f:
        for g, c, tss, strand, _ in genes:  # + strand: start = tss + 1; - strand: end = tss + 1
            start, end = (tss + 1, tss + 500) if strand == "+" else (tss - 498, tss + 1)
            f.write(f'{c}\ttest\tgene\t{start}\t{end}\t.\t{strand}\t.\tgene_id "{g}";\n')
            f.write(f'{c}\ttest\texon\t{start}\t{end}\t.\t{strand}\t.\tgene_id "{g}";\n')
    with open(os.path.join(root, "genes.tsv"), "w") as f:
        f.write("gene_id\tchrom\ttss\tstrand\tsubset\n")
        f.writelines("\t".join(map(str, g)) + "\n" for g in genes)
    return genes


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("walkthrough"))
    synth(os.path.join(root, "basenji"), {"mouse": 4}, SynthConfig(
        seq_length=SEQ, examples=(("train", 8), ("valid", 4), ("test", 8)), records_per_file=8), progress=False)
    for name in ("mouse", "mm10.ml.fa"):
        os.symlink(os.path.join(root, "basenji", name), os.path.join(root, name))
    genome = Genome(os.path.join(root, "mm10.ml.fa"))
    chroms = {c: genome.chrom_length(c) for c in genome.chromosomes()}
    rng = np.random.default_rng(0)
    write_bigwigs(root, chroms, rng)
    regions = read_bed_file(os.path.join(root, "mouse", "sequences.bed"))
    genes = write_genes(root, regions)
    with open(os.path.join(root, "pseudobulk_rna.tsv"), "w") as f:
        f.write("gene_id\t" + "\t".join(CELLS) + "\n")
        f.writelines(f"{g[0]}\t" + "\t".join(f"{v:.4f}" for v in rng.gamma(2, 3, len(CELLS))) + "\n" for g in genes)
    from torch_ref import Basenji2

    torch.manual_seed(0)
    torch.save(Basenji2(ModelConfig.tiny()).state_dict(), os.path.join(root, "basenji2.pt"))

    chrom, size = next(iter(chroms.items()))
    sizes = {"--steps 20000": "--steps 4", "--eval-every 500": "--eval-every 2",
             "--variant basenji2-double-prime": "--variant basenji2-double-prime --widths tiny",
             ATTR_REGION: f"{chrom}:{size // 2 - 5000}-{size // 2 + 5000}",
             ISM_REGION: f"{chrom}:{size // 2}-{size // 2 + 40}"}
    cwd = os.getcwd()
    os.chdir(root)
    try:
        results = [(cmd, *run(cmd, sizes)) for cmd in readme_commands()]
    finally:
        os.chdir(cwd)
    return {"root": root, "results": results, "genome": genome, "genes": genes, "regions": regions,
            "sizes": sizes, "chroms": chroms}


def path(walk, *parts):
    return os.path.join(walk["root"], *parts)


def summary(walk, out, what):
    return json.load(open(path(walk, out, f"{what}_summary.json")))


def tsv(file):
    lines = [line.rstrip("\n").split("\t") for line in open(file)]
    return lines[0], lines[1:]


def test_every_readme_command_succeeds(walk):
    assert len(walk["results"]) == 12
    for cmd, code, err in walk["results"]:
        assert code == 0, f"{cmd}\n{err}"


def test_finetuning_records_the_heads_tracks_and_its_log1p_assay(walk):
    rows = read_targets_file(path(walk, "runs", "ft", "model_best", "targets_finetune.txt"))
    assert [r["description"] for r in rows] == [f"{a}:{c}" for a in ("ATAC", "RNA") for c in CELLS]
    _, _, meta = checkpoint.load_arrays(path(walk, "runs", "ft", "model_best"))
    assert meta["head_targets"]["finetune"] == rows
    assert meta["train_config"]["modalities"] == [["atac", 3, 1.0, False], ["rna", 3, 1.0, True]]
    records = [json.loads(line) for line in open(path(walk, "runs", "ft", "metrics.jsonl"))]
    valid = [r for r in records if r["split"] == "valid"]
    assert {(r["species"], r["head"]) for r in records if r["split"] != "stop"} == {("mouse", "finetune")}
    for r in valid:  # the seed's joint loss, rna=1: (L_rna + L_atac) / 2
        assert r["loss"] == pytest.approx((r["loss_rna"] + r["loss_atac"]) / 2, rel=1e-5)


def _predict(ckpt, source, head):
    model, meta = checkpoint.load_model(ckpt)
    seqs = np.stack([source[i]["sequence"] for i in range(len(source))]).astype(np.float32)
    # N as the model was trained: fine-tuned from a seed .pt, whose kipoiseq encoding has N = 0.25
    assert checkpoint.n_value_of(meta) == 0.25
    seqs[seqs.sum(-1) == 0] = 0.25
    return np.asarray(forward(model, seqs, head), np.float64)


def test_positions_compare_rna_as_log1p_by_default(walk):
    s = summary(walk, "runs/eval", "positions")
    assert s["log1p_assays"] == ["RNA"]
    pred = _predict(path(walk, "runs", "ft", "model_best"),
                    BasenjiSource(path(walk, "store_atac"), "mouse", "test"), "finetune").reshape(-1, 6)
    targets = [BasenjiSource(path(walk, f"store_{a}"), "mouse", "test") for a in ("atac", "rna")]
    y = np.concatenate([np.stack([t[i]["target"] for i in range(len(t))]).reshape(-1, 3).astype(np.float64)
                        for t in targets], axis=1)
    y[:, 3:] = np.log1p(y[:, 3:])
    header, rows = tsv(path(walk, "runs", "eval", "tracks.tsv"))
    assert [r[2] for r in rows] == [f"{a}:{c}" for a in ("ATAC", "RNA") for c in CELLS]
    for t, row in enumerate(rows):
        assert float(row[header.index("pearson_r")]) == pytest.approx(pearsonr(pred[:, t], y[:, t])[0], abs=1e-5)


def test_tss_of_the_gtf_takes_subsets_from_the_regions(walk):
    header, rows = tsv(path(walk, "runs", "tss", "tss_predictions.tsv"))
    want = {g: (c, tss, strand, subset) for g, c, tss, strand, subset in walk["genes"]}
    assert len(rows) == len(want)
    for r in rows:  # GTF 1-based -> 0-based TSS; the subset of the region holding it
        assert (r[1], int(r[2]), r[3], r[4]) == want[r[0]]
    model, _ = checkpoint.load_model(path(walk, "basenji2_jax"))
    genome = walk["genome"]
    for r in rows[:3]:
        tss = int(r[2])
        x = index_to_one_hot(genome.fetch(r[1], tss - SEQ // 2, tss + SEQ // 2))[None].astype(np.float32)
        x[x.sum(-1) == 0] = 0.25  # N as a converted seed .pt records it
        pred = np.asarray(forward(model, x, "mouse"))[0]
        b = pred.shape[0] // 2
        np.testing.assert_allclose([float(v) for v in r[5:]], pred[b - 1:b + 2].sum(0), rtol=1e-5)


def test_tss_of_the_finetuned_head_pairs_rna_tracks_by_name(walk):
    s = summary(walk, "runs/tss_ft", "tss")
    assert s["pairs"] == [[f"RNA:{c}", c] for c in CELLS]
    assert s["log1p_assays"] == ["RNA"]
    header, rows = tsv(path(walk, "runs", "tss_ft", "tss_predictions.tsv"))
    assert header[5:] == [f"{a}:{c}" for a in ("ATAC", "RNA") for c in CELLS]
    _, expr_rows = tsv(path(walk, "pseudobulk_rna.tsv"))
    expr = {r[0]: np.array([float(v) for v in r[1:]]) for r in expr_rows}
    pred = np.array([[float(v) for v in r[8:]] for r in rows])  # RNA columns: already log(x+1)
    observed = np.log1p(np.array([expr[r[0]] for r in rows]))
    _, per_track = tsv(path(walk, "runs", "tss_ft", "tss_per_track.tsv"))
    assert [r[:2] for r in per_track] == [[f"RNA:{c}", c] for c in CELLS]
    for t, r in enumerate(per_track):
        assert float(r[2]) == pytest.approx(pearsonr(pred[:, t], observed[:, t])[0], abs=1e-6)
    assert any(f"RNA:{CELLS[0]} <- {CELLS[0]}" in err for cmd, _, err in walk["results"] if "tss_ft" in cmd)


def ridge_inputs(walk, tss_dir):
    """(`[genes, tracks]` predictions, `[genes, cells]` log(x+1) expression, train, test) of a TSS run."""
    _, rows = tsv(path(walk, "runs", tss_dir, "tss_predictions.tsv"))
    _, expr_rows = tsv(path(walk, "pseudobulk_rna.tsv"))
    expr = {r[0]: [float(v) for v in r[1:]] for r in expr_rows}
    pred = np.array([[float(v) for v in r[5:]] for r in rows])
    y = np.log1p(np.array([expr[r[0]] for r in rows]))
    return pred, y, np.array([r[4] in ("train", "valid") for r in rows]), np.array([r[4] == "test" for r in rows])


def closed_form_ridge(x, y, train, alpha):
    """(weights, intercept) of ridge with an unpenalised intercept on x standardised by the training rows."""
    sd = x[train].std(0)
    xs = (x - x[train].mean(0)) / np.where(sd > 0, sd, 1)
    a, b = xs[train], y[train]
    am, bm = a.mean(0), b.mean()
    w = np.linalg.solve((a - am).T @ (a - am) + alpha * np.eye(a.shape[1]), (a - am).T @ (b - bm))
    return xs, w, bm - am @ w


def test_ridge_chains_from_the_gtf_tss(walk):
    from sklearn.linear_model import RidgeCV

    from jax_basenji.evaluate.ridge import CV_ALPHAS

    s = summary(walk, "runs/ridge", "ridge")
    subsets = [g[4] for g in walk["genes"]]
    assert (s["train_genes"], s["test_genes"]) == (subsets.count("train") + subsets.count("valid"),
                                                   subsets.count("test"))
    cage = [i for i, r in enumerate(read_targets_file(path(walk, "mouse", "targets.txt")))
            if r["description"].startswith("CAGE")]
    assert s["tracks"] == len(cage) > 0
    # --alpha cv: per cell type sklearn's leave-one-out choice; the fit is ridge's closed form on
    # log(x+1) of the CAGE predictions (the mouse head predicts no track as log(x+1)).
    pred, y, train, test = ridge_inputs(walk, "tss")
    x = np.log1p(pred[:, cage])
    _, coefs = tsv(path(walk, "runs", "ridge", "ridge_coefficients.tsv"))
    _, per_cell = tsv(path(walk, "runs", "ridge", "ridge_per_cell_type.tsv"))
    assert [r[0] for r in coefs] == [r[0] for r in per_cell] == CELLS
    for c, (coef, cell) in enumerate(zip(coefs, per_cell)):
        xs, w, b = closed_form_ridge(x, y[:, c], train, float(coef[1]))
        assert float(coef[1]) == pytest.approx(RidgeCV(alphas=CV_ALPHAS).fit(xs[train], y[train, c]).alpha_,
                                               rel=1e-7)  # TSV: 8 significant digits
        np.testing.assert_allclose([float(v) for v in coef[2:]], [b, *w], rtol=1e-4, atol=1e-6)
        assert float(cell[1]) == pytest.approx(pearsonr(xs[test] @ w + b, y[test, c])[0], abs=1e-5)


def test_ridge_takes_the_columns_a_log1p_head_predicts_as_they_are(walk):
    # tss_tracks.txt says which columns `evaluate tss` wrote on the log(x+1) scale: the RNA ones,
    # trained with --log1p rna. Ridge transforms only the others.
    rows = read_targets_file(path(walk, "runs", "tss_ft", "tss_tracks.txt"))
    assert [(r["label"], r["log1p"]) for r in rows] == [(f"{a}:{c}", flag) for a, flag in (("ATAC", "0"), ("RNA", "1"))
                                                        for c in CELLS]
    code, err = _main("jax_basenji.evaluate", [
        "ridge", "--predictions", "runs/tss_ft/tss_predictions.tsv", "--expression", "pseudobulk_rna.tsv",
        "--tracks", "ATAC", "RNA", "--output", "runs/ridge_ft"], walk["root"])
    assert code == 0, err
    assert summary(walk, "runs/ridge_ft", "ridge")["log_scale_tracks"] == [f"RNA:{c}" for c in CELLS]
    pred, y, train, test = ridge_inputs(walk, "tss_ft")
    x = np.concatenate([np.log1p(pred[:, :3]), pred[:, 3:]], axis=1)
    _, coefs = tsv(path(walk, "runs", "ridge_ft", "ridge_coefficients.tsv"))
    for c, coef in enumerate(coefs):  # --alpha 1 (the default)
        _, w, b = closed_form_ridge(x, y[:, c], train, 1.0)
        np.testing.assert_allclose([float(v) for v in coef[2:]], [b, *w], rtol=1e-4, atol=1e-6)


def window_of(walk, region):
    """(window start, `[SEQ, 4]` float32 one-hot with N = 0.25) of the input window centred on `region`."""
    chrom, span = region.split(":")
    start, end = map(int, span.split("-"))
    w_start = (start + end) // 2 - SEQ // 2
    x = index_to_one_hot(walk["genome"].fetch(chrom, w_start, w_start + SEQ)).astype(np.float32)
    x[x.sum(-1) == 0] = 0.25  # N as the model was trained: fine-tuned from a seed .pt
    return w_start, x


def test_attribution_is_the_input_x_gradient_of_the_atac_tracks(walk):
    assert summary(walk, "runs/attr", "attribution")["tracks"] == 3
    model, _ = checkpoint.load_model(path(walk, "runs", "ft", "model_best"))
    _, x = window_of(walk, walk["sizes"][ATTR_REGION])
    b = model.cfg.output_bins(SEQ) // 2  # --bins center: b - 1, b, b + 1

    def mean_atac(x):
        return model(x[None], "finetune")[0, b - 1:b + 2, :3].mean()  # --tracks ATAC: the head's first 3

    want = np.asarray(jax.jit(jax.grad(mean_atac))(x) * x)
    got = np.load(path(walk, "runs", "attr", "attribution.npy"))
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max())


def test_ism_is_the_change_of_the_atac_prediction(walk):
    s = summary(walk, "runs/ism", "ism")
    scores = np.load(path(walk, "runs", "ism", "ism.npy"))
    assert s["tracks"] == 3 and scores.shape == (40, 4)
    model, _ = checkpoint.load_model(path(walk, "runs", "ft", "model_best"))
    region = walk["sizes"][ISM_REGION]
    w_start, x = window_of(walk, region)
    k = 7  # one position of the region, mutated to each base
    i = int(region.split(":")[1].split("-")[0]) + k - w_start
    batch = np.repeat(x[None], 5, axis=0)
    batch[1:, i] = np.eye(4, dtype=np.float32)
    pred = np.asarray(jax.jit(lambda x: model(x, "finetune"))(batch), np.float64)
    b = pred.shape[1] // 2
    mean = pred[:, b - 1:b + 2, :3].mean(axis=(1, 2))
    change = mean[1:] - mean[0]
    ref = int(np.argmax(x[i]))
    assert x[i, ref] == 1 and scores[k, ref] == 0
    # float32 predictions, batched otherwise: each within 1e-5 of its size, and so their differences
    atol = 1e-5 * abs(mean[0])
    np.testing.assert_allclose(scores[k], change, rtol=1e-4, atol=atol)
    bedgraph = open(path(walk, "runs", "ism", "ism.bedgraph")).read().splitlines()
    assert float(bedgraph[1 + k].split("\t")[3]) == pytest.approx(np.delete(change, ref).mean(), rel=1e-4, abs=atol)


def _main(module, argv, cwd):
    """(exit code, stderr) of `python -m module argv` run in `cwd`."""
    here = os.getcwd()
    os.chdir(cwd)
    try:
        return run(f"python -m {module} " + " ".join(shlex.quote(a) for a in argv), {})
    finally:
        os.chdir(here)


@pytest.mark.parametrize("argv, message", [
    # Expression columns named like tracks of two assays: refused, never the first match.
    (["--tracks", "ATAC", "RNA"], "expression column 'Ectoderm' matches 2 tracks (ATAC:Ectoderm, RNA:Ectoderm)"),
    (["--pair-by", "order"], "--pair-by order: 6 selected tracks and 3 expression columns"),
    (["--tracks", "Ectoderm"], "--tracks 'Ectoderm' is ambiguous: it names ATAC:Ectoderm, RNA:Ectoderm"),
    (["--tracks", "RNA", "--log1p-assay", "RNAseq"], "--log1p-assay 'RNAseq' matches no track; the head's assays "
                                                      "are ATAC, RNA"),
])
def test_ambiguous_tracks_are_errors(walk, argv, message):
    code, err = _main("jax_basenji.evaluate", [
        "tss", "--checkpoint", "runs/ft/model_best", "--fasta", "mm10.ml.fa", "--genes", "genes.tsv", "--head",
        "finetune", "--targets", "pseudobulk_rna.tsv", "--output", "runs/refused", "--no-progress", *argv],
        walk["root"])
    assert code == 2 and err.strip().splitlines() == [f"error: {err.strip()[7:]}"] and message in err
    assert not os.path.exists(path(walk, "runs", "refused"))  # no empty output folder either


def test_pairing_by_order_is_printed(walk):
    code, err = _main("jax_basenji.evaluate", [
        "tss", "--checkpoint", "runs/ft/model_best", "--fasta", "mm10.ml.fa", "--genes", "genes.tsv", "--head",
        "finetune", "--targets", "pseudobulk_rna.tsv", "--tracks", "5", "4", "3", "--pair-by", "order",
        "--output", "runs/by_order", "--no-progress"], walk["root"])
    assert code == 0
    assert "pairing by order: RNA:Ectoderm <- Ectoderm, RNA:Endoderm <- Endoderm, RNA:Mesoderm <- Mesoderm" in err
    assert f"wrote {path(walk, 'runs', 'by_order')}/: " in err


def test_reconverting_into_an_existing_store_replaces_every_shard(walk):
    store = path(walk, "store_again")
    shutil.copytree(path(walk, "store_atac"), store)
    before = BasenjiSource(store, "mouse", "train")[0]["target"].astype(np.float32)
    code, err = _main("jax_basenji.data", ["tracks", "--regions", "mouse/sequences.bed", "--bigwig",
                                           *sorted(glob.glob(path(walk, "atac", "*.bw"))), "--fasta", "mm10.ml.fa",
                                           "--output", "ft_scaled", "--species", "mouse", "--scale", "2",
                                           "--no-progress"], walk["root"])
    assert code == 0, err
    args = ["convert", "--input", "ft_scaled", "--output", store, "--no-progress"]
    code, err = _main("jax_basenji.data", args, walk["root"])
    assert code == 2 and "--overwrite" in err  # an existing store is never half-replaced
    code, err = _main("jax_basenji.data", [*args, "--overwrite"], walk["root"])
    assert code == 0, err
    after = BasenjiSource(store, "mouse", "train")
    assert after.targets[0]["scale"] == "2.0"
    np.testing.assert_array_equal(after[0]["target"], (2 * before).astype(np.float16))


def test_a_missing_species_names_the_stores_species(walk):
    code, err = _main("jax_basenji.evaluate", [
        "positions", "--checkpoint", "runs/ft/model_best", "--data", "store_atac", "--head", "finetune",
        "--output", "runs/no_species", "--no-progress"], walk["root"])  # --species left out: human
    assert code == 2 and "store_atac has no species 'human': it has mouse (pass --species)" in err


def test_tss_reads_several_stores_as_the_finetuned_head_was_trained(walk):
    code, err = _main("jax_basenji.evaluate", [
        "tss", "--checkpoint", "runs/ft/model_best", "--data", "store_atac", "store_rna", "--species", "mouse",
        "--subset", "test", "--genes", "genes.tsv", "--head", "finetune", "--output", "runs/tss_stores",
        "--no-progress"], walk["root"])
    assert code == 0, err
    header, rows = tsv(path(walk, "runs", "tss_stores", "tss_targets.tsv"))
    assert header[5:] == [f"{a}:{c}" for a in ("ATAC", "RNA") for c in CELLS]
    sources = [BasenjiSource(path(walk, f"store_{a}"), "mouse", "test") for a in ("atac", "rna")]
    region = {(r.chrom, r.start): i for i, r in enumerate(sources[0].regions)}
    g = rows[0]
    r = next(r for r in sources[0].regions if r.chrom == g[1] and r.start + CROP <= int(g[2]) < r.end - CROP)
    b = (int(g[2]) - r.start - CROP) // 128
    want = np.concatenate([s[region[(r.chrom, r.start)]]["target"][b - 1:b + 2].astype(np.float64).sum(0)
                           for s in sources])
    np.testing.assert_allclose([float(v) for v in g[5:]], want, rtol=1e-6)
    assert summary(walk, "runs/tss_stores", "tss")["log1p_assays"] == ["RNA"]


def test_subsets_come_from_the_first_region_whose_target_span_holds_the_tss():
    from jax_basenji.data.layout import Region
    from jax_basenji.evaluate.tss import Gene, subsets_from_regions

    regions = [Region("c", 0, 1600, "train"), Region("c", 800, 2400, "test"), Region("d", 0, 1600, "valid")]
    genes = [Gene("in_crop", "c", 50, "+"), Gene("a", "c", 150, "+"), Gene("both", "c", 1000, "-"),
             Gene("b", "c", 2250, "+"), Gene("d", "d", 500, "+"), Gene("no_region", "e", 5, "+"),
             Gene("given", "c", 1000, "+", "valid")]
    # spans: c 100-1500 (train), c 900-2300 (test), d 100-1500 (valid): the region minus length / 16 per side
    assert [g.subset for g in subsets_from_regions(genes, regions)] == ["", "train", "train", "test", "valid", "",
                                                                         "valid"]
