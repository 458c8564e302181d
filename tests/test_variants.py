"""`variants score` / `merge`: statistics equal a direct computation from `predict` on the same windows
(their construction is checked against upstream basenji_sad.py in parity_tests/test_basenji_sad.py),
a flipped VCF is scored in its own orientation, a mismatching deletion is skipped, float16 is clipped,
the summary ranks by |SAD|, runs resume exactly and refuse changed settings, shards merge into the
unsharded file, the VCF is streamed, and bad input gives one line."""

import os

import h5py
import numpy as np
import pytest

from jax_basenji.checkpoint import save_model
from jax_basenji.config import ModelConfig
from jax_basenji.data.genome import Genome
from jax_basenji.data.layout import index_to_one_hot
from jax_basenji.model import build_model
from jax_basenji.predict import main as predict_main
from jax_basenji.variants import output
from jax_basenji.variants import score as score_module
from jax_basenji.variants.__main__ import main as variants_main
from jax_basenji.variants.alleles import window_pair
from jax_basenji.variants.output import PERCENTILES, write_h5
from jax_basenji.variants.vcf import variants
from tests.interrupt import interrupt_after_first_record, planned_groups

L, TRACKS = 16_384, 4
HEADER = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"


def other(base, k=1):
    return "ACGT"[("ACGT".index(base) + k) % 4]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("variants")
    rng = np.random.default_rng(2)
    chroms = {"chr1": "".join(rng.choice(list("ACGT"), 30_000)), "chr2": "".join(rng.choice(list("ACGT"), 10_000))}
    with open(root / "g.fa", "w") as f:
        for name, seq in chroms.items():
            f.write(f">{name}\n{seq}\n")
    save_model(str(root / "ckpt"), build_model(ModelConfig.tiny(heads={"human": TRACKS}), seed=5))
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


def score(world, out, *flags, vcf=None, fasta=None):
    return variants_main(["score", "--checkpoint", world["ckpt"], "--head", "human", "--vcf", vcf or world["vcf"],
                          "--fasta", fasta or world["fasta"], "--output", str(out), "--no-progress", "--batch-size",
                          "3", *flags])


def direct_stats(world, tmp_path, *flags, vcf=None, fasta=None):
    """Every statistic from `predict` on each scored variant's REF and ALT windows, in float64."""
    genome = Genome(fasta or world["fasta"])
    pairs = [p for p in (window_pair(genome, v, L) for v in variants(vcf or world["vcf"])) if p is not None]
    np.save(tmp_path / "x.npy", index_to_one_hot(np.stack([w for ref, alt, _ in pairs for w in (ref, alt)])))
    assert predict_main(["--checkpoint", world["ckpt"], "--head", "human", "--input", str(tmp_path / "x.npy"),
                         "--output", str(tmp_path / "y.npy"), "--overwrite", "--no-progress", *flags]) == 0
    y = np.load(tmp_path / "y.npy").astype(np.float64)
    ref, alt = y[0::2], y[1::2]
    r, a = ref.sum(1), alt.sum(1)
    return {"SAD": a - r, "REF_SUM": r, "ALT_SUM": a, "SAR": np.log2(a + 1) - np.log2(r + 1),
            "D2": np.sqrt(((alt - ref) ** 2).sum(1))}


def fp32_sums(stats) -> float:
    """Absolute tolerance of a statistic summed over bins: float32 rounding of the largest sum. The tiny
    random model's SADs are near that size, so a relative tolerance on them would test rounding."""
    return 2e-6 * np.abs(stats["REF_SUM"]).max()


def test_statistics_equal_a_direct_computation(world, tmp_path, capsys):
    assert score(world, tmp_path / "sad.h5", "--stats", "SAD", "REF_SUM", "ALT_SUM", "SAR", "D2", "--float32") == 0
    err = capsys.readouterr().err
    assert "1 variant(s) skipped: neither REF nor a same-length ALT matches" in err and "1 ALT allele(s) without a sequence" in err
    want = direct_stats(world, tmp_path)
    c1 = world["chroms"]["chr1"]
    with h5py.File(tmp_path / "sad.h5") as h5:
        assert [s.decode() for s in h5["snp"][:]] == ["snv", "multi", "multi", f"chr1:17000:{c1[16_999]}:"
                                                      f"{c1[16_999]}TTA", "del", "end", "flip"]
        assert list(h5["flipped"][:]) == [False] * 6 + [True]
        assert h5["ref_allele"][6].decode() == other(c1[18_999]) and h5["alt_allele"][6].decode() == c1[18_999]
        assert h5["pos"].dtype == np.uint32 and list(h5["pos"][:3]) == [15_000, 16_000, 16_000]
        assert [t.decode() for t in h5["target_ids"][:]] == [f"t{i}" for i in range(TRACKS)]  # no targets.txt
        for stat, values in want.items():  # the float32 rounding of the predictions, summed over bins
            np.testing.assert_allclose(h5[stat][:], values, rtol=1e-5, atol=fp32_sums(want), err_msg=stat)
            np.testing.assert_array_equal(h5[f"{stat}_pct"][:], np.percentile(
                h5[stat][:], 100 * PERCENTILES, axis=0).T.astype(np.float32), err_msg=stat)
        np.testing.assert_array_equal(h5["percentiles"][:], PERCENTILES)
    assert (tmp_path / "sad.png").stat().st_size > 5000
    assert not (tmp_path / "sad.h5.partial").exists()


def test_float16_statistics_and_their_percentiles(world, tmp_path):
    """Stored as upstream stores them: float16 values and percentiles of those float16 values."""
    assert score(world, tmp_path / "a.h5", "--stats", "SAD", "D2", "--float32") == 0
    assert score(world, tmp_path / "b.h5", "--stats", "SAD", "D2") == 0
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b:
        for stat in ("SAD", "D2"):
            assert b[stat].dtype == b[f"{stat}_pct"].dtype == np.float16
            np.testing.assert_array_equal(b[stat][:], a[stat][:].astype(np.float16))
            np.testing.assert_array_equal(b[f"{stat}_pct"][:], np.percentile(
                b[stat][:], 100 * PERCENTILES, axis=0).T.astype(np.float16))


def test_summary_names_each_variants_largest_absolute_sad(world, tmp_path):
    assert score(world, tmp_path / "sad.h5", "--float32") == 0
    with h5py.File(tmp_path / "sad.h5") as h5:
        sad = h5["SAD"][:]
    rows = [line.split("\t") for line in (tmp_path / "sad.tsv").read_text().splitlines()]
    assert rows[0] == ["snp", "chr", "pos", "ref_allele", "alt_allele", "flipped", "max_abs_sad_track", "sad"]
    assert len(rows) == 1 + len(sad)
    for row, values in zip(rows[1:], sad):
        k = int(np.argmax(np.abs(values)))
        assert row[6] == f"t{k}" and float(row[7]) == pytest.approx(values[k], rel=1e-5)


def test_outputs_are_written_and_read_in_row_chunks(world, tmp_path, monkeypatch):
    """Chunks of 2 rows (so that no step holds every row) give the files chunks of 4,096 give."""
    assert score(world, tmp_path / "one.h5", "--stats", "SAD", "D2") == 0
    monkeypatch.setattr(output, "ROWS", 2)
    monkeypatch.setattr(output, "PCT_BLOCK_BYTES", 7 * 2)  # percentiles of one track at a time
    assert score(world, tmp_path / "many.h5", "--stats", "SAD", "D2") == 0
    with h5py.File(tmp_path / "one.h5") as a, h5py.File(tmp_path / "many.h5") as b:
        assert set(a) == set(b)
        for k in a:
            np.testing.assert_array_equal(a[k][:], b[k][:], err_msg=k)
    assert (tmp_path / "one.tsv").read_text() == (tmp_path / "many.tsv").read_text()


def test_windows_go_to_the_device_as_base_indices(world, tmp_path, monkeypatch):
    """`[2 x batch, L]` uint8 per call (a sixteenth of float32 one-hot), statistics computed with it."""
    from jax_basenji.predict import core

    seen, original = [], core.Predictor.__call__
    monkeypatch.setattr(core.Predictor, "__call__", lambda self, batch, **kw: (
        seen.append((batch.shape, batch.dtype, kw.get("reduce") is not None)), original(self, batch, **kw))[1])
    assert score(world, tmp_path / "o.h5") == 0
    assert seen and set(seen) == {((6, L), np.dtype(np.uint8), True)}


def test_rc_shift_ensemble_and_track_filter(world, tmp_path):
    flags = ("--rc", "--shifts", "-1", "0", "1", "--targets-txt", world["targets"])
    assert score(world, tmp_path / "sad.h5", "--tracks", "DNASE", "--float32", *flags) == 0
    direct = direct_stats(world, tmp_path, *flags)
    want = direct["SAD"][:, 2:]
    with h5py.File(tmp_path / "sad.h5") as h5:
        np.testing.assert_allclose(h5["SAD"][:], want, rtol=1e-5, atol=fp32_sums(direct))
        assert h5["SAD"].dtype == np.float32 and h5["SAD"].shape == (7, 2)


def test_a_flipped_vcf_is_scored_in_its_own_orientation(world, tmp_path):
    """The genome carrying the ALT base: the window gets the VCF's REF back, so SAD, sign included, is the
    one of the same VCF line on a genome that carries REF; the row says `flipped`."""
    c1 = world["chroms"]["chr1"]
    alt = other(c1[14_999])
    (tmp_path / "alt.fa").write_text(f">chr1\n{c1[:14_999] + alt + c1[15_000:]}\n>chr2\n{world['chroms']['chr2']}\n")
    (tmp_path / "one.vcf").write_text(HEADER + f"chr1\t15000\tsnp\t{c1[14_999]}\t{alt}\t.\t.\t.\n")
    assert score(world, tmp_path / "a.h5", "--float32", vcf=str(tmp_path / "one.vcf")) == 0
    assert score(world, tmp_path / "b.h5", "--float32", vcf=str(tmp_path / "one.vcf"),
                 fasta=str(tmp_path / "alt.fa")) == 0
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b:
        np.testing.assert_array_equal(b["SAD"][:], a["SAD"][:])
        assert not a["flipped"][0] and b["flipped"][0]
        assert (b["ref_allele"][0].decode(), b["alt_allele"][0].decode()) == (c1[14_999], alt)


def test_a_deletion_whose_ref_is_not_the_genomes_is_skipped_not_flipped(world, tmp_path, capsys):
    """ACGT>A where the genome reads A + something else: not an insertion A>ACGT, a skipped row."""
    c1 = world["chroms"]["chr1"]
    ref = c1[14_999] + other(c1[15_000]) + c1[15_001:15_003]
    (tmp_path / "del.vcf").write_text(HEADER + f"chr1\t15000\tdel\t{ref}\t{c1[14_999]}\t.\t.\t.\n"
                                      f"chr1\t16000\tok\t{c1[15_999]}\t{other(c1[15_999])}\t.\t.\t.\n")
    assert score(world, tmp_path / "d.h5", vcf=str(tmp_path / "del.vcf")) == 0
    assert "1 variant(s) skipped" in capsys.readouterr().err
    with h5py.File(tmp_path / "d.h5") as h5:
        assert [s.decode() for s in h5["snp"][:]] == ["ok"]


def test_float16_statistics_are_clipped_to_its_range(tmp_path):
    big = np.array([[71_680.0, -1e6, 3.0]], np.float32)
    chunk = {"snp": np.array([b"v"]), "chr": np.array([b"chr1"]), "pos": np.array([5], np.uint32),
             "ref_allele": np.array([b"A"]), "alt_allele": np.array([b"C"]), "flipped": np.array([False]),
             "SAD": big}
    write_h5(str(tmp_path / "c.h5"), [chunk], rows=1, widths={"snp": 1, "chr": 4, "ref_allele": 1, "alt_allele": 1},
             stats=["SAD"], target_ids=["a", "b", "c"], target_labels=["", "", ""], float32=False, settings={})
    with h5py.File(tmp_path / "c.h5") as h5:
        assert h5["SAD"].dtype == np.float16
        assert h5["SAD"][0].tolist() == [65504.0, -65504.0, 3.0]
        assert np.isfinite(h5["SAD_pct"][:]).all()


def test_an_interrupted_run_resumes_to_the_same_file(world, tmp_path, monkeypatch):
    assert score(world, tmp_path / "straight.h5", "--stats", "SAD", "D2") == 0
    monkeypatch.setattr(score_module, "RECORD_EVERY_S", 0.0)  # record after every group
    interrupt_after_first_record(monkeypatch, score_module)
    with pytest.raises(KeyboardInterrupt):
        score(world, tmp_path / "resumed.h5", "--stats", "SAD", "D2")
    monkeypatch.undo()
    assert not (tmp_path / "resumed.h5").exists() and (tmp_path / "resumed.h5.partial" / "progress.json").exists()
    assert score(world, tmp_path / "resumed.h5", "--stats", "SAD", "D2") == 2  # never restarted silently
    firsts = planned_groups(monkeypatch)
    assert score(world, tmp_path / "resumed.h5", "--stats", "SAD", "D2", "--resume") == 0
    # the first group (3 positions: snv, multi x 2, insertion) is not scored again
    assert firsts == [4, 7]
    with h5py.File(tmp_path / "straight.h5") as a, h5py.File(tmp_path / "resumed.h5") as b:
        assert set(a) == set(b)
        for k in a:
            np.testing.assert_array_equal(a[k][:], b[k][:], err_msg=k)


def test_the_scoring_loop_reads_the_vcf_as_it_goes(world, tmp_path, monkeypatch):
    """When the first batch reaches the model, only the rows of the batches built ahead have been read."""
    pulled, seen_at_first_call = [], []
    real_variants = score_module.variants

    def counting(*args):
        for v in real_variants(*args):
            pulled.append(v)
            yield v

    monkeypatch.setattr(score_module, "variants", counting)
    from jax_basenji.predict import core
    original = core.Predictor.__call__

    def first_call(self, batch, **kw):
        seen_at_first_call.append(len(pulled))
        return original(self, batch, **kw)

    monkeypatch.setattr(core.Predictor, "__call__", first_call)
    assert score(world, tmp_path / "o.h5", "--batch-size", "1", "--no-incremental") == 0
    # 3 one-position groups built ahead (snv, multi x 2, insertion) and the row that ends the third;
    # all 8 rows twice (score, write)
    assert seen_at_first_call[0] <= 5 < len(pulled) == 16


def test_resume_refuses_a_run_with_other_settings_naming_the_setting(world, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(score_module, "RECORD_EVERY_S", 0.0)
    interrupt_after_first_record(monkeypatch, score_module)
    with pytest.raises(KeyboardInterrupt):
        score(world, tmp_path / "o.h5")
    monkeypatch.undo()
    capsys.readouterr()
    for flags, setting in ((("--rc",), "rc"), (("--shifts", "1", "0"), "shifts"), (("--tracks", "0", "1"), "columns"),
                           (("--n-value", "0.25"), "n_value"), (("--stats", "D2"), "stats")):
        assert score(world, tmp_path / "o.h5", "--resume", *flags) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"other settings ({setting}:" in err[0], (flags, err)


def test_progress_is_recorded_every_few_seconds_not_every_batch(world, tmp_path, monkeypatch):
    calls = []
    real = score_module.record_done
    monkeypatch.setattr(score_module, "record_done", lambda *a: (calls.append(a[-1]), real(*a)))
    assert score(world, tmp_path / "o.h5", "--batch-size", "1") == 0  # 8 batches in well under 10 s
    assert calls == [8]


def test_shards_merge_into_the_unsharded_file(world, tmp_path, capsys):
    assert score(world, tmp_path / "all.h5", "--stats", "SAD", "D2") == 0
    for k in (1, 2, 3):
        assert score(world, tmp_path / f"s{k}.h5", "--stats", "SAD", "D2", "--shard", f"{k}/3") == 0
    shards = [str(tmp_path / f"s{k}.h5") for k in (3, 1, 2)]  # any order
    assert variants_main(["merge", "--output", str(tmp_path / "merged.h5"), *shards]) == 0
    with h5py.File(tmp_path / "all.h5") as a, h5py.File(tmp_path / "merged.h5") as b:
        assert set(a) == set(b)
        for k in a:
            np.testing.assert_array_equal(a[k][:], b[k][:], err_msg=k)
    assert (tmp_path / "merged.tsv").read_text() == (tmp_path / "all.tsv").read_text()
    capsys.readouterr()
    assert variants_main(["merge", "--output", str(tmp_path / "m2.h5"), *shards[:2]]) == 2
    assert "shards 1/3, 3/3 given; expected 1/3 ... 3/3" in capsys.readouterr().err
    assert not (tmp_path / "m2.h5").exists()


def test_merge_refuses_files_of_other_runs_and_takes_empty_shards(world, tmp_path, capsys):
    for k in (1, 2):
        assert score(world, tmp_path / f"s{k}.h5", "--shard", f"{k}/2") == 0
    assert score(world, tmp_path / "rc.h5", "--shard", "2/2", "--rc") == 0
    assert score(world, tmp_path / "e9.h5", "--shard", "9/9") == 0  # 8 rows in 9 shards: the 9th is empty
    with h5py.File(tmp_path / "e9.h5") as h5:
        assert h5["SAD"].shape == (0, TRACKS) and np.isnan(h5["SAD_pct"][:]).all()
    capsys.readouterr()
    (tmp_path / "text.h5").write_text("not HDF5")
    with h5py.File(tmp_path / "other.h5", "w") as h5:
        h5["SAD"] = np.zeros((1, 1))
    s1 = str(tmp_path / "s1.h5")
    for other, message in (("rc.h5", "was scored with other settings than"), ("text.h5", "is not a readable HDF5"),
                           ("other.h5", "is not a `variants score --shard K/N` output"),
                           ("e9.h5", "shards 1/2, 9/9 given")):
        assert variants_main(["merge", "--output", str(tmp_path / "m.h5"), s1, str(tmp_path / other)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "m.h5").exists()


def test_the_vcf_is_streamed(tmp_path):
    """Rows come one at a time: a damaged line is only met when reached (nothing holds the whole file)."""
    (tmp_path / "v.vcf").write_text(HEADER + "chr1\t10\ta\tA\tC\t.\t.\t.\nchr1\t20\tb\tA\tG,T\t.\t.\t.\n"
                                    "chr1\tnot-a-position\tc\tA\tC\t.\t.\t.\n")
    stream = variants(str(tmp_path / "v.vcf"), start=1)
    first = next(stream)
    assert (first.id, first.alt, first.record_alts) == ("b", "G", ("G", "T"))
    assert next(stream).alt == "T"
    with pytest.raises(Exception, match="not a readable VCF"):
        next(stream)


@pytest.mark.parametrize("change, message", [
    (dict(vcf="BAD"), "is not a readable VCF"),
    (dict(vcf="CHR9"), "chromosome 'chr9' is not in"),
    (dict(head="mouse"), "unknown head 'mouse'"),
    (dict(flags=("--tracks", "ATAC", "--targets-txt", "TARGETS")), "--tracks 'ATAC'"),
    (dict(flags=("--shard", "4/3")), "--shard '4/3'"),
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
