"""`variants score`: every statistic equals a direct computation from `predict` on REF/ALT windows built
here from the FASTA text (SNVs, a multi-allelic record, an insertion, a deletion, a variant near a
chromosome end, a REF mismatch that flips and one that is skipped), the swap invariant, resuming an
interrupted run, and one-line errors."""

import os

import h5py
import numpy as np
import pytest

from jax_basenji.checkpoint import save_model
from jax_basenji.config import ModelConfig
from jax_basenji.model import build_model
from jax_basenji.predict import main as predict_main
from tests.interrupt import interrupt_after_first_batch
from jax_basenji.variants.__main__ import main as variants_main

L, TRACKS = 16_384, 4
HEADER = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("variants")
    rng = np.random.default_rng(2)
    chroms = {"chr1": "".join(rng.choice(list("ACGT"), 30_000)), "chr2": "".join(rng.choice(list("ACGT"), 10_000))}
    with open(root / "g.fa", "w") as f:
        for name, seq in chroms.items():
            f.write(f">{name}\n{seq}\n")
    save_model(str(root / "ckpt"), build_model(ModelConfig.tiny(heads={"human": TRACKS}), seed=5))

    def other(base, k=1):
        return "ACGT"[("ACGT".index(base) + k) % 4]

    c1, c2 = chroms["chr1"], chroms["chr2"]
    rows = [
        ("chr1", 15_000, "snv", c1[14_999], other(c1[14_999])),
        ("chr1", 16_000, "multi", c1[15_999], f"{other(c1[15_999])},{other(c1[15_999], 2)}"),
        ("chr1", 17_000, ".", c1[16_999], c1[16_999] + "TTA"),  # insertion
        ("chr1", 18_000, "del", c1[17_999:18_003], c1[17_999]),  # deletion of 3 bases
        ("chr2", 9_990, "end", c2[9_989], other(c2[9_989])),  # the window runs past chr2's end
        ("chr1", 19_000, "flip", other(c1[18_999]), c1[18_999]),  # REF is the ALT in the FASTA
        ("chr1", 20_000, "skip", other(c1[19_999]), other(c1[19_999], 2)),  # neither allele matches
        ("chr1", 21_000, "sym", c1[20_999], "<DEL>"),
    ]
    (root / "in.vcf").write_text(HEADER + "".join(f"{c}\t{p}\t{i}\t{r}\t{a}\t.\t.\t.\n" for c, p, i, r, a in rows))
    (root / "targets.txt").write_text("\tidentifier\tdescription\n" + "".join(
        f"{i}\tT{i}\t{'CAGE' if i < 2 else 'DNASE'}:t{i}\n" for i in range(TRACKS)))
    return {"root": root, "chroms": chroms, "ckpt": str(root / "ckpt"), "fasta": str(root / "g.fa"),
            "vcf": str(root / "in.vcf"), "targets": str(root / "targets.txt")}


def onehot(text):
    codes = np.frombuffer(text.encode(), np.uint8)
    return np.stack([codes == ord(b) for b in "ACGT"], axis=-1).astype(np.float32)


def windows(chroms, chrom, pos, ref, alt):
    """REF and ALT windows from text: first REF base at L // 2, N outside the chromosome, ALT keeping L."""
    seq, start = chroms[chrom], pos - 1 - L // 2
    base = lambda i: seq[i] if 0 <= i < len(seq) else "N"  # noqa: E731
    ref_text = "".join(base(i) for i in range(start, start + L))
    right = "".join(base(i) for i in range(pos - 1 + len(ref), pos - 1 + len(ref) + L))
    alt_text = (ref_text[: L // 2] + alt + right)[:L]
    assert ref_text[L // 2: L // 2 + len(ref)] == ref
    return onehot(ref_text), onehot(alt_text)


def direct_stats(world, tmp_path, variants, *flags):
    pairs = [windows(world["chroms"], *v) for v in variants]
    np.save(tmp_path / "x.npy", np.stack([w for pair in pairs for w in pair]))
    assert predict_main(["--checkpoint", world["ckpt"], "--head", "human", "--input", str(tmp_path / "x.npy"),
                         "--output", str(tmp_path / "y.npy"), "--overwrite", "--no-progress", *flags]) == 0
    y = np.load(tmp_path / "y.npy").astype(np.float64)
    ref, alt = y[0::2], y[1::2]
    r, a = ref.sum(1), alt.sum(1)
    return {"SAD": a - r, "REF": r, "ALT": a, "SAR": np.log2(a + 1) - np.log2(r + 1),
            "D2": np.sqrt(((alt - ref) ** 2).sum(1))}


def score(world, out, *flags, vcf=None, fasta=None):
    return variants_main(["score", "--checkpoint", world["ckpt"], "--head", "human", "--vcf", vcf or world["vcf"],
                          "--fasta", fasta or world["fasta"], "--output", str(out), "--no-progress", "--batch-size",
                          "3", *flags])


def expected_variants(world):
    """What is scored, as (chrom, pos, ref, alt): multi-allelic split, flip swapped, skip and <DEL> dropped."""
    c1, c2 = world["chroms"]["chr1"], world["chroms"]["chr2"]
    other = lambda b, k=1: "ACGT"[("ACGT".index(b) + k) % 4]  # noqa: E731
    return [("chr1", 15_000, c1[14_999], other(c1[14_999])), ("chr1", 16_000, c1[15_999], other(c1[15_999])),
            ("chr1", 16_000, c1[15_999], other(c1[15_999], 2)), ("chr1", 17_000, c1[16_999], c1[16_999] + "TTA"),
            ("chr1", 18_000, c1[17_999:18_003], c1[17_999]), ("chr2", 9_990, c2[9_989], other(c2[9_989])),
            ("chr1", 19_000, c1[18_999], other(c1[18_999]))]


def test_statistics_equal_a_direct_computation(world, tmp_path, capsys):
    assert score(world, tmp_path / "sad.h5", "--stats", "SAD", "REF", "ALT", "SAR", "D2", "--float32") == 0
    err = capsys.readouterr().err
    assert "1 variant(s) skipped: neither REF nor ALT matches" in err and "1 symbolic" in err
    want = direct_stats(world, tmp_path, expected_variants(world))
    with h5py.File(tmp_path / "sad.h5") as h5:
        assert [s.decode() for s in h5["snp"][:]] == ["snv", "multi", "multi", "chr1:17000:" + expected_variants(
            world)[3][2] + ":" + expected_variants(world)[3][3], "del", "end", "flip"]
        assert list(h5["flipped"][:]) == [False] * 6 + [True]
        assert [a.decode() for a in h5["ref_allele"][:]] == [v[2] for v in expected_variants(world)]
        assert [t.decode() for t in h5["target_ids"][:]] == [f"t{i}" for i in range(TRACKS)]  # no targets.txt
        for stat, values in want.items():
            np.testing.assert_allclose(h5[stat][:], values, rtol=1e-5, atol=1e-5 * np.abs(values).max(),
                                       err_msg=stat)
    summary = (tmp_path / "sad.tsv").read_text().splitlines()
    assert summary[0].split("\t")[:2] == ["snp", "chr"] and len(summary) == 8
    assert (tmp_path / "sad.png").stat().st_size > 5000
    assert not (tmp_path / "sad.h5.partial").exists()


def test_rc_shift_ensemble_and_track_filter(world, tmp_path):
    flags = ("--rc", "--shifts", "-1", "0", "1", "--targets-txt", world["targets"])
    assert score(world, tmp_path / "sad.h5", "--tracks", "DNASE", "--float32", *flags) == 0
    want = direct_stats(world, tmp_path, expected_variants(world), *flags)["SAD"][:, 2:]
    with h5py.File(tmp_path / "sad.h5") as h5:
        np.testing.assert_allclose(h5["SAD"][:], want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
        assert h5["SAD"].dtype == np.float32 and h5["SAD"].shape == (7, 2)


def test_swapping_ref_and_alt_on_the_alt_genome_negates_sad(world, tmp_path):
    """The FASTA carrying the ALT base, and the VCF's alleles swapped: the same pair read the other way."""
    c1 = world["chroms"]["chr1"]
    alt = "ACGT"[("ACGT".index(c1[14_999]) + 1) % 4]
    (tmp_path / "alt.fa").write_text(f">chr1\n{c1[:14_999] + alt + c1[15_000:]}\n>chr2\n{world['chroms']['chr2']}\n")
    (tmp_path / "one.vcf").write_text(HEADER + f"chr1\t15000\tsnp\t{c1[14_999]}\t{alt}\t.\t.\t.\n")
    (tmp_path / "swapped.vcf").write_text(HEADER + f"chr1\t15000\tsnp\t{alt}\t{c1[14_999]}\t.\t.\t.\n")
    assert score(world, tmp_path / "a.h5", "--float32", vcf=str(tmp_path / "one.vcf")) == 0
    assert score(world, tmp_path / "b.h5", "--float32", vcf=str(tmp_path / "swapped.vcf"),
                 fasta=str(tmp_path / "alt.fa")) == 0
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b:
        np.testing.assert_allclose(b["SAD"][:], -a["SAD"][:], rtol=1e-5, atol=1e-6)
        assert not b["flipped"][0]


def test_an_interrupted_run_resumes_to_the_same_file(world, tmp_path, monkeypatch):
    assert score(world, tmp_path / "straight.h5", "--stats", "SAD", "D2") == 0
    interrupt_after_first_batch(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        score(world, tmp_path / "resumed.h5", "--stats", "SAD", "D2")
    monkeypatch.undo()
    assert not (tmp_path / "resumed.h5").exists() and (tmp_path / "resumed.h5.partial" / "progress.json").exists()
    assert score(world, tmp_path / "resumed.h5", "--stats", "SAD", "D2") == 2  # never restarted silently
    assert score(world, tmp_path / "resumed.h5", "--stats", "SAD", "D2", "--resume") == 0
    with h5py.File(tmp_path / "straight.h5") as a, h5py.File(tmp_path / "resumed.h5") as b:
        assert set(a) == set(b)
        for k in a:
            np.testing.assert_array_equal(a[k][:], b[k][:], err_msg=k)


@pytest.mark.parametrize("change, message", [
    (dict(vcf="BAD"), "is not a readable VCF"),
    (dict(vcf="CHR9"), "chromosome 'chr9' is not in"),
    (dict(head="mouse"), "unknown head 'mouse'"),
    (dict(flags=("--tracks", "ATAC", "--targets-txt", "TARGETS")), "--tracks 'ATAC'"),
])
def test_bad_input_is_one_line_and_writes_nothing(world, tmp_path, capsys, change, message):
    vcf = world["vcf"]
    if change.get("vcf") == "BAD":
        vcf = str(tmp_path / "bad.vcf")
        (tmp_path / "bad.vcf").write_text("not a vcf\n")
    elif change.get("vcf") == "CHR9":
        vcf = str(tmp_path / "chr9.vcf")
        (tmp_path / "chr9.vcf").write_text(HEADER + "chr9\t100\t.\tA\tC\t.\t.\t.\n")
    flags = tuple(world["targets"] if f == "TARGETS" else f for f in change.get("flags", ()))
    rc = variants_main(["score", "--checkpoint", world["ckpt"], "--head", change.get("head", "human"),
                        "--vcf", vcf, "--fasta", world["fasta"], "--output", str(tmp_path / "o.h5"),
                        "--no-progress", *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err
    assert not [p for p in os.listdir(tmp_path) if p.startswith(("o.", ".tmp"))]
