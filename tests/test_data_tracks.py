"""`python -m jax_basenji.data tracks`: sample sheets, clip/scale/mean, chromosome ends, errors."""

import os

import numpy as np
import pyBigWig
import pytest

from jax_basenji.data.__main__ import main as data_main
from jax_basenji.data.layout import Statistics, read_targets
from jax_basenji.data.store import convert
from jax_basenji.data.source import BasenjiSource

LENGTH, CHROM = 2048, 5000  # crop 128 bp per side: 14 bins of 128 bp per region


@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(0)
    fasta = tmp_path / "g.fa"
    fasta.write_text(">chrA\n" + "".join(rng.choice(list("ACGT"), CHROM)) + "\n")
    values = rng.uniform(0, 4, CHROM).astype(np.float32)
    bw_path = str(tmp_path / "sample.bw")
    bw = pyBigWig.open(bw_path, "w")
    bw.addHeader([("chrA", CHROM)])
    bw.addEntries("chrA", 0, values=values.tolist(), span=1, step=1)
    bw.close()
    bed = tmp_path / "regions.bed"
    # The second region runs past the chromosome end (4000 + 2048 > 5000).
    bed.write_text(f"chrA\t0\t{LENGTH}\ttrain\nchrA\t4000\t{4000 + LENGTH}\tvalid\n")
    return {"fasta": str(fasta), "bw": bw_path, "bed": str(bed), "values": values, "root": tmp_path}


def test_sample_sheet_sets_names_clip_scale_and_mean(files, capsys):
    sheet = files["root"] / "samples.tsv"
    sheet.write_text("file\tidentifier\tassay\tclip\tscale\tsum_stat\n"
                     "sample.bw\traw\tatac\t\t\t\n"
                     "sample.bw\tclipped\tatac\t200\t0.5\t\n"
                     "sample.bw\tmean\trna\t\t\tmean\n")
    out = str(files["root"] / "out")
    assert data_main(["tracks", "--regions", files["bed"], "--samples", str(sheet), "--fasta", files["fasta"],
                      "--output", out, "--species", "mouse", "--no-progress"]) == 0
    warnings = capsys.readouterr().err.splitlines()  # one clean line each, no Python warning echo
    assert warnings and all(w.startswith("warning: ") for w in warnings)
    assert any("runs past the chromosome" in w for w in warnings)
    species = os.path.join(out, "mouse")
    targets = read_targets(species)
    assert [(t["identifier"], t["description"], t["clip"], t["scale"], t["sum_stat"]) for t in targets] == [
        ("raw", "ATAC:raw", "", "1.0", "sum"), ("clipped", "ATAC:clipped", "200.0", "0.5", "sum"),
        ("mean", "RNA:mean", "", "1.0", "mean")]
    stats = Statistics.read(species)
    assert (stats.seq_length, stats.target_length, stats.raw["crop_bp"]) == (LENGTH, 14, 128)

    convert(out, str(files["root"] / "store"), progress=False)
    v = files["values"]
    # Targets are stored as float16 (the Basenji format): the float32 bin values, rounded once.
    train = BasenjiSource(str(files["root"] / "store"), "mouse", "train")[0]["target"]
    bins = v[128: LENGTH - 128].reshape(-1, 128)
    np.testing.assert_array_equal(train[:, 0], bins.sum(1).astype(np.float16))
    np.testing.assert_array_equal(train[:, 1], (np.minimum(bins.sum(1), 200) * 0.5).astype(np.float16))
    np.testing.assert_array_equal(train[:, 2], bins.mean(1).astype(np.float16))
    # Past the chromosome end: zeros, the rest as usual.
    valid = BasenjiSource(str(files["root"] / "store"), "mouse", "valid")[0]["target"]
    inside = (CHROM - 4128) // 128  # whole bins before the end
    np.testing.assert_array_equal(valid[:inside, 0],
                                  v[4128: 4128 + inside * 128].reshape(-1, 128).sum(1).astype(np.float16))
    assert (valid[inside + 1:] == 0).all()


@pytest.mark.filterwarnings("ignore:.*runs past the chromosome")
def test_errors_are_named_and_nothing_is_left_half_written(files, capsys):
    out = str(files["root"] / "out")
    base = ["tracks", "--regions", files["bed"], "--fasta", files["fasta"], "--output", out, "--species", "mouse",
            "--no-progress"]
    bad_bed = files["root"] / "bad.bed"
    bad_bed.write_text(f"chrZ\t0\t{LENGTH}\ttrain\n")
    cases = [
        (["tracks", "--regions", str(bad_bed), "--bigwig", files["bw"], "--fasta", files["fasta"], "--output", out,
          "--species", "mouse", "--no-progress"], "chromosome 'chrZ' is not in"),
        (base + ["--bigwig", str(files["root"] / "missing.bw")], "bigWig file is missing"),
        (base + ["--bigwig", files["fasta"]], "is not a readable bigWig file"),
        (base, "give either --bigwig groups or a --samples sheet"),
    ]
    for argv, message in cases:
        assert data_main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not os.path.exists(os.path.join(out, "mouse"))
    assert data_main(base + ["--bigwig", files["bw"]]) == 0
    assert data_main(base + ["--bigwig", files["bw"]]) == 2  # exists: refused without --overwrite
    assert "exists; pass --overwrite" in capsys.readouterr().err
