"""`predict regions` and `predict genome`: predictions from a genome equal the model on windows built
independently here (numpy text -> one-hot, N past the ends), bigWig files read back bin by bin,
resuming an interrupted genome run, and one-line errors."""

import json
import os

import h5py
import numpy as np
import pyBigWig
import pytest

from jax_basenji.checkpoint import save_model
from jax_basenji.config import ModelConfig
from jax_basenji.model import build_model
from jax_basenji.predict import main as predict_main
from jax_basenji.predict.plot import measured_bins, measured_track, plot_region
from tests.interrupt import interrupt_after_first_batch

L, POOL = 16_384, 128
TRACKS = 4


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("genome_predict")
    rng = np.random.default_rng(0)
    chroms = {"chr1": "".join(rng.choice(list("ACGT"), 40_000)), "chr2": "".join(rng.choice(list("ACGT"), 9_000))}
    chroms["chr1"] = chroms["chr1"][:20_000] + "N" * 300 + chroms["chr1"][20_300:]
    with open(root / "g.fa", "w") as f:
        for name, seq in chroms.items():
            f.write(f">{name}\n" + "\n".join(seq[i:i + 70] for i in range(0, len(seq), 70)) + "\n")
    cfg = ModelConfig.tiny(heads={"human": TRACKS})
    model = build_model(cfg, seed=3)
    save_model(str(root / "ckpt"), model)
    (root / "targets.txt").write_text("\tidentifier\tdescription\n" + "".join(
        f"{i}\tT{i}\t{'CAGE' if i < 2 else 'ATAC'}:t{i}\n" for i in range(TRACKS)))
    return {"root": root, "chroms": chroms, "fasta": str(root / "g.fa"), "ckpt": str(root / "ckpt"),
            "bins": cfg.output_bins(L), "targets": str(root / "targets.txt")}


def window(chroms, chrom, start):
    """`[L, 4]` one-hot of chrom:[start, start + L), N (all zeros) outside the chromosome, built from text."""
    seq = chroms[chrom]
    text = "".join(seq[i] if 0 <= i < len(seq) else "N" for i in range(start, start + L))
    codes = np.frombuffer(text.encode(), np.uint8)
    return np.stack([codes == ord(b) for b in "ACGT"], axis=-1).astype(np.float32)


def direct(world, tmp_path, windows, *flags):
    """The `.npy` mode of predict on independently built windows."""
    np.save(tmp_path / "w.npy", np.stack(windows))
    assert predict_main(["--checkpoint", world["ckpt"], "--head", "human", "--input", str(tmp_path / "w.npy"),
                         "--output", str(tmp_path / "w_pred.npy"), "--overwrite", "--no-progress", *flags]) == 0
    return np.load(tmp_path / "w_pred.npy")


def regions(world, tmp_path, bed_rows, *flags, name="out.h5"):
    (tmp_path / "r.bed").write_text("".join("\t".join(map(str, r)) + "\n" for r in bed_rows))
    rc = predict_main(["regions", "--checkpoint", world["ckpt"], "--head", "human", "--fasta", world["fasta"],
                       "--bed", str(tmp_path / "r.bed"), "--output", str(tmp_path / name), "--no-progress", *flags])
    return rc


BED = [("chr1", 0, 1000, "start"), ("chr1", 18_000, 22_000, "middle_N"), ("chr2", 8_000, 9_500, "past_end")]


def test_regions_equal_the_model_on_centred_windows(world, tmp_path):
    assert regions(world, tmp_path, BED) == 0
    want = direct(world, tmp_path, [window(world["chroms"], c, (s + e) // 2 - L // 2) for c, s, e, _ in BED])
    with h5py.File(tmp_path / "out.h5") as h5:
        np.testing.assert_allclose(h5["preds"][:], want, rtol=1e-5, atol=1e-6)
        assert [n.decode() for n in h5["name"][:]] == ["start", "middle_N", "past_end"]
        assert list(h5["start"][:]) == [0, 18_000, 8_000]
        assert [c.decode() for c in h5["chrom"][:]] == ["chr1", "chr1", "chr2"]
        assert h5["bin_start"][0] == 500 - L // 2 + (L - world["bins"] * POOL) // 2


def test_sum_site_length_tracks_and_float16(world, tmp_path):
    assert regions(world, tmp_path, BED, "--sum", "--site-length", "1280", "--tracks", "ATAC",
                   "--targets-txt", world["targets"], "--float16") == 0
    want = direct(world, tmp_path, [window(world["chroms"], c, (s + e) // 2 - L // 2) for c, s, e, _ in BED])
    first = (world["bins"] - 10) // 2
    want = want[:, first:first + 10, 2:].sum(axis=1)
    with h5py.File(tmp_path / "out.h5") as h5:
        assert h5["preds"].dtype == np.float16 and h5["preds"].shape == (3, 2)
        # stored as float16: at most one float16 ulp from the float32 sums rounded to float16
        np.testing.assert_array_max_ulp(h5["preds"][:], want.astype(np.float16), maxulp=1)
        assert [t.decode() for t in h5["target_ids"][:]] == ["T2", "T3"]


def test_an_odd_site_length_is_centred_on_the_bin_holding_the_region_centre(world, tmp_path):
    """384 bp = 3 bins: the bin holding the region's centre and one bin each side (bins // 2 - 1 ..
    bins // 2 + 1, as the seed's basenji_predict_bed.py and the TSS bins of `evaluate tss`)."""
    assert regions(world, tmp_path, BED, "--site-length", "384") == 0
    want = direct(world, tmp_path, [window(world["chroms"], c, (s + e) // 2 - L // 2) for c, s, e, _ in BED])
    centre = world["bins"] // 2
    with h5py.File(tmp_path / "out.h5") as h5:
        np.testing.assert_allclose(h5["preds"][:], want[:, centre - 1:centre + 2], rtol=1e-5, atol=1e-6)
        for (_, s, e, _), first in zip(BED, h5["bin_start"][:]):
            assert first + POOL <= (s + e) // 2 < first + 2 * POOL  # the middle bin holds the centre


def test_regions_past_a_chromosome_end_are_predicted_with_one_warning(world, tmp_path, capsys):
    """Past the end the window is N (all N for a region wholly past it), as the model sees it; one
    `warning:` line counts such regions and names the first."""
    rows = [("chr1", 0, 1000, "inside"), ("chr2", 8_000, 9_500, "past_end"), ("chr2", 20_000, 21_000, "beyond")]
    assert regions(world, tmp_path, rows) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, warnings
    assert "2 region(s)" in warnings[0] and "past_end, chr2:8000-9500; chr2 is 9000 bp" in warnings[0], warnings[0]
    beyond = window(world["chroms"], "chr2", 20_500 - L // 2)
    assert not beyond.any()  # all N
    want = direct(world, tmp_path, [window(world["chroms"], c, (s + e) // 2 - L // 2) for c, s, e, _ in rows])
    with h5py.File(tmp_path / "out.h5") as h5:
        np.testing.assert_allclose(h5["preds"][:], want, rtol=1e-5, atol=1e-6)
    assert regions(world, tmp_path, rows[:1], name="inside.h5") == 0
    assert "warning:" not in capsys.readouterr().err  # regions within their chromosomes: no warning


def test_rc_and_shift_ensembles_match_predict(world, tmp_path):
    flags = ("--rc", "--shifts", "-1", "0", "1", "--targets-txt", world["targets"])
    assert regions(world, tmp_path, BED, *flags) == 0
    want = direct(world, tmp_path, [window(world["chroms"], c, (s + e) // 2 - L // 2) for c, s, e, _ in BED], *flags)
    with h5py.File(tmp_path / "out.h5") as h5:
        np.testing.assert_allclose(h5["preds"][:], want, rtol=1e-5, atol=1e-6)


def test_embed_writes_the_final_layer(world, tmp_path):
    import jax.numpy as jnp

    from jax_basenji.checkpoint import load_model

    assert regions(world, tmp_path, BED[:2], "--embed", "final") == 0
    model, _ = load_model(world["ckpt"])
    x = np.stack([window(world["chroms"], c, (s + e) // 2 - L // 2) for c, s, e, _ in BED[:2]])
    want = np.asarray(model.embed(jnp.asarray(x)))
    with h5py.File(tmp_path / "out.h5") as h5:
        np.testing.assert_allclose(h5["preds"][:], want, rtol=1e-5, atol=1e-6)
        assert h5["preds"].shape[-1] == model.cfg.final_channels


def _tiled(world, tmp_path, chrom):
    """Direct predictions of the windows tiling `chrom`, as `[positions // 128 (+ past the end), tracks]`."""
    crop, stride = (L - world["bins"] * POOL) // 2, world["bins"] * POOL
    starts = range(-crop, len(world["chroms"][chrom]), stride)
    return direct(world, tmp_path, [window(world["chroms"], chrom, s) for s in starts]).reshape(-1, TRACKS)


def _genome(world, out, *flags):
    return predict_main(["genome", "--checkpoint", world["ckpt"], "--head", "human", "--fasta", world["fasta"],
                         "--chrom", "chr1", "chr2", "--tracks", "0", "3", "--output", str(out), "--no-progress",
                         "--batch-size", "2", *flags])


def test_genome_bigwigs_equal_tiled_windows_bin_by_bin(world, tmp_path):
    assert _genome(world, tmp_path / "g", "--bedgraph") == 0
    for chrom in ("chr1", "chr2"):
        want = _tiled(world, tmp_path, chrom)
        size = len(world["chroms"][chrom])
        n = -(-size // POOL)  # the last bin is clipped to the chromosome's end
        for track, col in (("t0", 0), ("t3", 3)):
            bw = pyBigWig.open(str(tmp_path / "g" / f"{track}.bw"))
            assert bw.chroms() == {"chr1": 40_000, "chr2": 9_000}
            got = np.array([bw.values(chrom, k * POOL, min((k + 1) * POOL, size))[0] for k in range(n)])
            np.testing.assert_allclose(got, want[:n, col], rtol=1e-5, atol=1e-6)
            bw.close()
    lines = (tmp_path / "g" / "t0.bedGraph").read_text().splitlines()
    assert lines[0].split("\t")[:3] == ["chr1", "0", "128"] and lines[-1].split("\t")[:3] == ["chr2", "8960", "9000"]


def test_an_interrupted_genome_run_resumes_to_identical_files(world, tmp_path, monkeypatch, capsys):
    """Blocks of predictions go to one raw file per track; a kill after the first block (and a torn
    second block) or while the bigWigs are written resumes to the files of an uninterrupted run, byte
    for byte, and a track's raw file is gone as soon as its bigWig is in place."""
    from jax_basenji.predict import genome as genome_module

    assert _genome(world, tmp_path / "straight") == 0
    monkeypatch.setattr(genome_module, "BLOCK_BYTES", 1)  # a block is one batch of 2 windows
    interrupt_after_first_batch(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        _genome(world, tmp_path / "resumed")
    monkeypatch.undo()
    partial = tmp_path / "resumed" / ".partial"
    assert json.loads((partial / "progress.json").read_text())["done"] == 2
    track_bytes = 2 * world["bins"] * 4  # 2 windows of float32 bins, per track: no [bins, tracks] array
    assert sorted(os.listdir(partial)) == ["0.f32", "1.f32", "progress.json"]
    assert [(partial / f).stat().st_size for f in ("0.f32", "1.f32")] == [track_bytes, track_bytes]
    with open(partial / "0.f32", "ab") as f:  # a block the kill left half-written, never recorded
        f.write(b"\xff" * 100)
    assert _genome(world, tmp_path / "resumed") == 2  # an unfinished run is not silently restarted
    capsys.readouterr()
    assert _genome(world, tmp_path / "resumed", "--resume", "--rc") == 2  # nor continued with other settings
    assert "other settings (rc: False then, True now)" in capsys.readouterr().err

    real, written = genome_module._write_track, []

    def dies_after_one_track(path, name, *args):
        if written:
            raise KeyboardInterrupt
        real(path, name, *args)
        written.append(name)

    monkeypatch.setattr(genome_module, "_write_track", dies_after_one_track)
    with pytest.raises(KeyboardInterrupt):
        _genome(world, tmp_path / "resumed", "--resume")
    monkeypatch.undo()
    assert (tmp_path / "resumed" / "t0.bw").exists() and not (partial / "0.f32").exists()
    assert (partial / "1.f32").exists() and not (tmp_path / "resumed" / "t3.bw").exists()
    assert _genome(world, tmp_path / "resumed", "--resume") == 0
    assert not partial.exists()
    for track in ("t0", "t3"):
        resumed, straight = (tmp_path / run / f"{track}.bw" for run in ("resumed", "straight"))
        assert resumed.read_bytes() == straight.read_bytes()


def test_an_interrupted_regions_run_resumes_to_the_same_file(world, tmp_path, monkeypatch, capsys):
    """A kill after the first batch: the run is not restarted silently, --resume with other settings is
    refused, and --resume writes the HDF5 (and bigWig) of an uninterrupted run."""
    rows = [("chr1", 8_000, 9_000, "a"), ("chr1", 30_000, 31_000, "b"), ("chr2", 2_000, 2_500, "c")]
    flags = ("--batch-size", "1", "--site-length", "2560", "--bigwig-tracks", "1")
    for run in ("straight", "resumed"):
        (tmp_path / run).mkdir()
    assert regions(world, tmp_path / "straight", rows, *flags) == 0
    interrupt_after_first_batch(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        regions(world, tmp_path / "resumed", rows, *flags)
    monkeypatch.undo()
    assert json.loads((tmp_path / "resumed" / "out.h5.partial" / "progress.json").read_text())["done"] == 1
    assert not (tmp_path / "resumed" / "out.h5").exists()
    capsys.readouterr()
    assert regions(world, tmp_path / "resumed", rows, *flags) == 2  # never restarted silently
    assert regions(world, tmp_path / "resumed", rows, *flags, "--resume", "--rc") == 2
    assert "other settings (rc: False then, True now)" in capsys.readouterr().err
    assert regions(world, tmp_path / "resumed", rows[:2], *flags, "--resume") == 2  # another BED
    assert regions(world, tmp_path / "resumed", rows, *flags, "--resume") == 0
    assert not (tmp_path / "resumed" / "out.h5.partial").exists()
    with h5py.File(tmp_path / "straight" / "out.h5") as a, h5py.File(tmp_path / "resumed" / "out.h5") as b:
        assert set(a) == set(b)
        for k in a:
            np.testing.assert_array_equal(a[k][:], b[k][:], err_msg=k)
    assert (tmp_path / "resumed" / "out.t1.bw").read_bytes() == (tmp_path / "straight" / "out.t1.bw").read_bytes()


def test_regions_bigwig_tracks_and_plot(world, tmp_path, capsys):
    rows = [("chr1", 8_000, 9_000, "a"), ("chr1", 30_000, 31_000, "b")]
    assert regions(world, tmp_path, rows, "--site-length", "2560", "--bigwig-tracks", "1",
                   "--plot", "b", "--measured-bigwig", str(tmp_path / "none.bw")) == 2  # a missing bigWig
    assert regions(world, tmp_path, rows, "--site-length", "2560", "--bigwig-tracks", "1", "--plot", "b",
                   "--overwrite") == 0
    want = direct(world, tmp_path, [window(world["chroms"], c, (s + e) // 2 - L // 2) for c, s, e, _ in rows])
    first = (world["bins"] - 20) // 2
    bw = pyBigWig.open(str(tmp_path / "out.t1.bw"))
    for k, (c, s, e, _) in enumerate(rows):
        bin0 = (s + e) // 2 - L // 2 + (L - world["bins"] * POOL) // 2 + first * POOL
        got = [bw.values(c, bin0 + j * POOL, bin0 + (j + 1) * POOL)[0] for j in range(20)]
        np.testing.assert_allclose(got, want[k, first:first + 20, 1], rtol=1e-5, atol=1e-6)
    assert (tmp_path / "out_b.png").stat().st_size > 5000
    capsys.readouterr()
    plot_region(str(tmp_path / "out.h5"), "a", [], max_tracks=2)  # fewer rows than tracks: said, not silent
    assert "draws the first 2 of" in capsys.readouterr().err


def test_a_measured_track_is_plotted_in_the_units_the_head_was_trained_on(tmp_path):
    """The region plot bins a measured bigWig as `data tracks` binned that track's targets (mean, clip,
    scale recorded in the head's table, matched by file name), else as plain per-bin sums."""
    bw = pyBigWig.open(str(tmp_path / "m.bw"), "w")
    bw.addHeader([("chr1", 1000)])
    bw.addEntries(["chr1"], [0], ends=[1000], values=[3.0])
    bw.close()
    rows = [{"file": "/where/it/was/trained/m.bw", "sum_stat": "mean", "clip": "2.5", "scale": "2"}]
    trained = measured_track(str(tmp_path / "m.bw"), rows)
    with pytest.warns(UserWarning, match="runs past the chromosome"):
        np.testing.assert_array_equal(measured_bins(trained, "chr1", 744, 3, POOL), [5.0, 5.0, 0.0])
    plain = measured_track(str(tmp_path / "m.bw"), None)
    np.testing.assert_array_equal(measured_bins(plain, "chr1", 0, 2, POOL), [3.0 * POOL] * 2)


def test_a_bin_across_a_chromosome_start_is_written_from_0_with_its_own_value(world, tmp_path):
    """A region at a chromosome's start: bins wholly before position 0 are not written, the bin across 0
    is written from 0 to its end, and it and every later bin hold their own predictions."""
    assert regions(world, tmp_path, [("chr1", 0, 1000, "start")], "--bigwig-tracks", "2") == 0
    want = direct(world, tmp_path, [window(world["chroms"], "chr1", 500 - L // 2)])[0, :, 2]
    bin0 = 500 - L // 2 + (L - world["bins"] * POOL) // 2  # the first bin's start: before the chromosome
    kept = [j for j in range(world["bins"]) if bin0 + (j + 1) * POOL > 0]
    assert bin0 + kept[0] * POOL < 0 < bin0 + (kept[0] + 1) * POOL  # a bin across the start
    bw = pyBigWig.open(str(tmp_path / "out.t2.bw"))
    got = bw.intervals("chr1")
    bw.close()
    assert [(s, e) for s, e, _ in got] == [(max(bin0 + j * POOL, 0), bin0 + (j + 1) * POOL) for j in kept]
    np.testing.assert_allclose([v for _, _, v in got], want[kept], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rows, flags, message", [
    ([("chr9", 0, 100)], (), "chromosome 'chr9' is not in"),
    ([("chr1", "x", 100)], (), r"r.bed:1: expected 'chrom start end \[name\]'"),
    ([("chr1", 20_000, 21_000), ("chr1", 0, 1000)], ("--bigwig-tracks", "0"), "overlaps the bins of the region"),
    ([("chr1", 0, 1000)], ("--tracks", "DNASE", "--targets-txt", "TARGETS"), "--tracks 'DNASE'"),
])
def test_bad_input_is_one_line_and_writes_nothing(world, tmp_path, capsys, rows, flags, message):
    flags = tuple(world["targets"] if f == "TARGETS" else f for f in flags)
    assert regions(world, tmp_path, rows, *flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    import re

    assert re.search(message, err[0]), err[0]
    assert not (tmp_path / "out.h5").exists()  # every option is checked before predicting
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]


def test_bigwig_chromosomes_follow_the_fasta_whatever_the_bed_order(world, tmp_path):
    """A BED sorted another way than the FASTA (chr2 first) gives a bigWig whose chromosomes are in the
    FASTA's order, each holding its own region's values."""
    rows = [("chr2", 4_000, 5_000, "c"), ("chr1", 30_000, 31_000, "d")]
    assert regions(world, tmp_path, rows, "--site-length", "1280", "--bigwig-tracks", "0") == 0
    bw = pyBigWig.open(str(tmp_path / "out.t0.bw"))
    assert list(bw.chroms()) == ["chr1", "chr2"]
    got = {c: [v for _, _, v in bw.intervals(c)] for c in ("chr1", "chr2")}
    bw.close()
    with h5py.File(tmp_path / "out.h5") as h5:
        for k, (chrom, *_rest) in enumerate(rows):  # each region's 10 central bins
            np.testing.assert_allclose(got[chrom], h5["preds"][k, :, 0], rtol=1e-6)


def test_an_existing_output_is_refused_without_overwrite(world, tmp_path, capsys):
    assert regions(world, tmp_path, BED[:1]) == 0
    before = (tmp_path / "out.h5").read_bytes()
    assert regions(world, tmp_path, BED[:1]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "out.h5").read_bytes() == before


def test_predicted_bigwigs_never_replace_the_measured_ones_and_a_refusal_loads_no_model(world, tmp_path,
                                                                                       monkeypatch, capsys):
    """A fine-tuned head's track ids are its input bigWigs' names: `--bigwig-tracks` writes OUT.{track}.bw,
    never {track}.bw beside it; an output that exists, or that is an input, is refused before the model
    loads, and the refused run writes nothing."""
    from jax_basenji import checkpoint

    rows = [("chr1", 8_000, 9_000, "a")]
    (tmp_path / "t1.bw").write_bytes(b"measured")
    assert regions(world, tmp_path, rows, "--site-length", "1280", "--bigwig-tracks", "1") == 0
    assert (tmp_path / "t1.bw").read_bytes() == b"measured" and (tmp_path / "out.t1.bw").exists()

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(checkpoint, "load_model", no_model)
    (tmp_path / "again.t1.bw").write_bytes(b"an earlier prediction")
    capsys.readouterr()
    assert regions(world, tmp_path, rows, "--site-length", "1280", "--bigwig-tracks", "1", name="again.h5") == 2
    assert "again.t1.bw already exists" in capsys.readouterr().err
    assert not (tmp_path / "again.h5").exists() and not (tmp_path / "again.h5.partial").exists()
    (tmp_path / "x_a.png").write_bytes(b"a measured file named as the plot would be")
    assert regions(world, tmp_path, rows, "--plot", "a", "--measured-bigwig", str(tmp_path / "x_a.png"),
                   "--overwrite", name="x.h5") == 2
    assert "is an input of this run" in capsys.readouterr().err


def test_threads_opening_one_genome_build_its_index_once(tmp_path):
    """The window prefetch threads share one Genome: opened by 4 threads at once, a FASTA without a .fai
    gets one complete index, and every thread reads every chromosome (unguarded, pyfaidx builds in
    each thread and one read another's half-written index in half of such trials)."""
    import threading

    from jax_basenji.data.genome import Genome, encode

    rng = np.random.default_rng(0)
    for trial in range(10):
        seqs = {c: rng.choice(np.frombuffer(b"ACGT", np.uint8), 50_000).tobytes() for c in ("chrA", "chrB", "chrC")}
        fasta = tmp_path / f"g{trial}.fa"
        fasta.write_bytes(b"".join(b">" + c.encode() + b"\n" + b"\n".join(s[i:i + 80] for i in range(0, len(s), 80))
                                   + b"\n" for c, s in seqs.items()))
        genome, start, got = Genome(str(fasta)), threading.Barrier(4), []

        def read():
            start.wait()
            try:
                got.append({c: genome.fetch(c, 0, 50_000) for c in reversed(seqs)})
            except Exception as e:  # noqa: BLE001 - collected, asserted below
                got.append(e)

        threads = [threading.Thread(target=read) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for reads in got:
            assert not isinstance(reads, Exception), f"trial {trial}: {reads}"
            for c, s in seqs.items():
                np.testing.assert_array_equal(reads[c], encode(s))
