"""`python -m jax_basenji.data regions`: a Basenji-style region BED (chrom start end subset) from a genome,
the input of `data tracks`; and fine-tuning's species taken from the stores, never a default."""

from __future__ import annotations

import json
import os

import numpy as np
import pyBigWig
import pytest

from jax_basenji.data.__main__ import main as data_main
from jax_basenji.data.genome import Genome
from jax_basenji.data.regions import RegionsConfig, contigs, make_regions
from jax_basenji.errors import InputError
from jax_basenji.finetune import store_species

L = 2048


@pytest.fixture(scope="module")
def genome(tmp_path_factory):
    """chr1: 30 kb with a 2 kb assembly gap at 12 kb and a 50 bp N run at 5 kb (not a gap); chr2 20 kb with
    900 N (44 %) in its second window; chr3 9 kb."""
    root = tmp_path_factory.mktemp("regions")
    rng = np.random.default_rng(0)
    seqs = {c: list("".join(rng.choice(list("ACGT"), n))) for c, n in (("chr1", 30_000), ("chr2", 20_000),
                                                                        ("chr3", 9_000))}
    seqs["chr1"][12_000:14_000] = "N" * 2000
    seqs["chr1"][5_000:5_050] = "N" * 50
    seqs["chr2"][2_048:2_048 + 900] = "N" * 900  # short of a gap, 44 % of a region
    with open(root / "g.fa", "w") as f:
        for c, s in seqs.items():
            f.write(f">{c}\n{''.join(s)}\n")
    return root


def read_bed(path):
    return [(c, int(s), int(e), sub) for c, s, e, sub in (line.split() for line in open(path))]


def test_contigs_split_at_gaps_only():
    index = np.zeros(100, np.uint8)
    index[:3] = index[40:42] = index[60:80] = index[97:] = 4
    assert [(c.start, c.end) for c in contigs(index, "c", gap=10)] == [(3, 60), (80, 97)]


def test_regions_tile_contigs_by_chromosome_subsets(genome):
    cfg = RegionsConfig(seq_length=L, valid_chroms=("chr2",), test_chroms=("chr3",))
    counts = make_regions(str(genome / "g.fa"), str(genome / "a.bed"), cfg)
    rows = read_bed(genome / "a.bed")
    assert counts == {s: sum(r[3] == s for r in rows) for s in ("train", "valid", "test")}
    assert {r[0] for r in rows if r[3] == "train"} == {"chr1"} and {r[0] for r in rows if r[3] == "valid"} == {"chr2"}
    # chr1's contigs [0, 12000) and [14000, 30000) tiled from their starts; the 50 bp N run is not a gap
    assert [r[1] for r in rows if r[0] == "chr1"] == [0, 2048, 4096, 6144, 8192, 14000, 16048, 18096, 20144,
                                                      22192, 24240, 26288]
    assert [r[1] for r in rows if r[0] == "chr2"] == [0] + list(range(4096, 20_000 - L + 1, L))  # 44 % N: dropped
    assert all(e - s == L for _, s, e, _ in rows)
    assert rows == sorted(rows, key=lambda r: (r[0], r[1]))  # the FASTA's order, by position


def test_random_contigs_hold_their_fraction_and_the_seed_fixes_them(genome):
    cfg = RegionsConfig(seq_length=L, stride=1024, valid_frac=0.2, test_frac=0.2, seed=3)
    make_regions(str(genome / "g.fa"), str(genome / "b.bed"), cfg)
    make_regions(str(genome / "g.fa"), str(genome / "c.bed"), cfg)
    rows = read_bed(genome / "b.bed")
    assert rows == read_bed(genome / "c.bed")
    assert {r[3] for r in rows} == {"train", "valid", "test"}
    spans = {}  # a contig lies in one subset: no region of one subset overlaps another's
    for c, s, e, sub in rows:
        spans.setdefault(sub, []).append((c, s, e))
    for a in spans["test"]:
        assert not any(c == a[0] and s < a[2] and a[1] < e for c, s, e in spans["train"] + spans["valid"])


def test_bigwigs_choose_chromosomes_and_another_assembly_is_refused(genome, capsys):
    sizes = {c: Genome(str(genome / "g.fa")).chrom_length(c) for c in ("chr1", "chr2", "chr3")}
    for name, chroms in (("two.bw", [("chr1", sizes["chr1"]), ("chr2", sizes["chr2"])]),
                         ("other.bw", [("chr1", sizes["chr1"] + 5)])):
        bw = pyBigWig.open(str(genome / name), "w")
        bw.addHeader(chroms)
        bw.close()
    argv = ["regions", "--fasta", str(genome / "g.fa"), "--seq-length", str(L), "--valid-chroms", "chr2",
            "--test-frac", "0"]
    assert data_main([*argv, "--output", str(genome / "d.bed"), "--bigwig", str(genome / "two.bw")]) == 0
    assert {r[0] for r in read_bed(genome / "d.bed")} == {"chr1", "chr2"}
    assert data_main([*argv, "--output", str(genome / "e.bed"), "--bigwig", str(genome / "other.bw")]) == 2
    assert "chr1 has 30005 bp there and 30000" in capsys.readouterr().err
    assert not os.path.exists(genome / "e.bed")
    assert data_main([*argv, "--output", str(genome / "d.bed")]) == 2  # exists: refused without --overwrite
    assert data_main(["regions", "--fasta", str(genome / "g.fa"), "--output", str(genome / "f.bed"),
                      "--valid-chroms", "chr9"]) == 2
    assert "held-out chromosome chr9" in capsys.readouterr().err.splitlines()[-1]


def test_the_bed_feeds_data_tracks(genome, capsys):
    make_regions(str(genome / "g.fa"), str(genome / "t.bed"), RegionsConfig(seq_length=L, valid_chroms=("chr2",),
                                                                            test_chroms=("chr3",)))
    bw = pyBigWig.open(str(genome / "cov.bw"), "w")
    bw.addHeader([("chr1", 30_000), ("chr2", 20_000), ("chr3", 9_000)])
    bw.addEntries(["chr1"], [0], ends=[30_000], values=[1.0])
    bw.close()
    out = str(genome / "tracks")
    assert data_main(["tracks", "--regions", str(genome / "t.bed"), "--bigwig", str(genome / "cov.bw"),
                      "--fasta", str(genome / "g.fa"), "--output", out, "--species", "human", "--no-progress"]) == 0
    assert f"assays named after the bigWigs' directories: {genome.name.upper()}" in capsys.readouterr().out
    stats = json.load(open(os.path.join(out, "human", "statistics.json")))
    rows = read_bed(genome / "t.bed")
    assert [stats[f"{s}_seqs"] for s in ("train", "valid", "test")] == [
        sum(r[3] == s for r in rows) for s in ("train", "valid", "test")]


def test_finetune_takes_the_stores_only_species_and_refuses_to_guess(tmp_path):
    for store, species in (("a", ["human"]), ("b", ["human", "mouse"])):
        for s in species:
            os.makedirs(tmp_path / store / s)
            (tmp_path / store / s / "meta.json").write_text("{}")
    assert store_species([("atac", str(tmp_path / "a"))]) == "human"
    with pytest.raises(InputError, match=r"hold \['human', 'mouse'\]; name one"):
        store_species([("atac", str(tmp_path / "b"))])
