"""Synthetic Basenji data -> store -> BasenjiSource -> augmentation -> grain batches."""

import os

import numpy as np
import pytest

from jax_basenji.data import BasenjiSource, DataError, make_dataset
from jax_basenji.data.__main__ import main as data_main
from jax_basenji.data.augment import Augment, reverse_complement, shift_sequence
from jax_basenji.data.genome import Genome
from jax_basenji.data.layout import index_to_one_hot, read_bed
from jax_basenji.data.store import convert
from jax_basenji.data.synth import REFERENCE_DIR


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Small synthetic data (16 kb, 8 + 4 tracks) converted to a store: (basenji dir, store dir)."""
    root = tmp_path_factory.mktemp("synthetic")
    rc = data_main(["synth", "--output", str(root / "basenji"), "--seq-length", "16384",
                    "--tracks", "human=8,mouse=4", "--examples", "train=20,valid=4,test=4",
                    "--records-per-file", "8", "--no-progress"])
    assert rc == 0
    convert(str(root / "basenji"), str(root / "store"), progress=False)
    return str(root / "basenji"), str(root / "store")


def test_synthetic_layout(synthetic):
    basenji, _ = synthetic
    for species, genome in (("human", "hg38"), ("mouse", "mm10")):
        assert os.path.exists(os.path.join(basenji, f"{genome}.ml.fa.fai"))
        assert sorted(os.listdir(os.path.join(basenji, species, "tfrecords"))) == [
            "test-0.tfr", "train-0.tfr", "train-1.tfr", "train-2.tfr", "valid-0.tfr"]
    rows = read_bed(os.path.join(basenji, "human"))
    chroms = {s: {r.chrom for r in rows if r.subset == s} for s in ("train", "valid", "test")}
    assert not (chroms["train"] & chroms["valid"]) and not (chroms["train"] & chroms["test"])
    assert not (chroms["valid"] & chroms["test"])  # held-out chromosomes


def test_source_follows_the_bed_order_and_matches_the_fasta(synthetic):
    """FASTA re-extraction at the stored length gives back the stored sequence."""
    basenji, store = synthetic
    src = BasenjiSource(store, "human", "train")
    genome = Genome(os.path.join(basenji, "hg38.ml.fa"))
    regions = [r for r in read_bed(os.path.join(basenji, "human")) if r.subset == "train"]
    assert len(src) == len(regions) == 20
    for i, r in enumerate(regions):
        ex = src[i]
        assert ex["sequence"].shape == (16_384, 4) and ex["target"].shape == (112, 8)
        np.testing.assert_array_equal(ex["sequence"], index_to_one_hot(genome.fetch(r.chrom, r.start, r.end)))
    refetched = BasenjiSource(store, "human", "train", seq_length=16_384,
                              fasta=os.path.join(basenji, "hg38.ml.fa"))
    for i in range(len(src)):
        np.testing.assert_array_equal(refetched[i]["sequence"], src[i]["sequence"])


def test_longer_sequences_are_centred_and_n_padded(synthetic):
    basenji, store = synthetic
    src = BasenjiSource(store, "human", "train")
    longer = BasenjiSource(store, "human", "train", seq_length=20_480, fasta=os.path.join(basenji, "hg38.ml.fa"))
    first = longer[0]["sequence"]  # the first region starts at position 0 of its chromosome
    assert first.shape == (20_480, 4)
    assert not first[:2048].any()  # N beyond the chromosome start
    np.testing.assert_array_equal(first[2048:2048 + 16_384], src[0]["sequence"])
    np.testing.assert_array_equal(longer[0]["target"], src[0]["target"])


def test_missing_chromosome_and_missing_fai(synthetic, tmp_path):
    basenji, store = synthetic
    fasta = tmp_path / "other.fa"
    fasta.write_text(">chrX\nACGTNNACGTacgt\n")
    src = BasenjiSource(store, "human", "train", seq_length=20_480, fasta=str(fasta))
    with pytest.raises(DataError, match=r"chromosome 'chr1' is not in .*other\.fa"):
        src[0]
    g = Genome(str(fasta))  # no .fai yet: built on first use
    np.testing.assert_array_equal(g.fetch("chrX", -2, 6), [4, 4, 0, 1, 2, 3, 4, 4])
    assert os.path.exists(str(fasta) + ".fai")
    np.testing.assert_array_equal(g.fetch("chrX", 10, 16), [0, 1, 2, 3, 4, 4])  # upper-cased
    with pytest.raises(DataError, match="FASTA file is missing"):
        Genome(str(tmp_path / "nope.fa"))


def test_other_length_without_fasta_is_refused(synthetic):
    with pytest.raises(ValueError, match="pass the genome FASTA"):
        BasenjiSource(synthetic[1], "human", "train", seq_length=20_480)


def test_reverse_complement_swaps_strands_and_flips_targets():
    one_hot = index_to_one_hot(np.array([0, 1, 2, 3, 4], np.uint8))  # A C G T N
    target = np.arange(6, dtype=np.float16).reshape(2, 3)
    seq, tgt = reverse_complement(one_hot, target, strand_pair=np.array([1, 0, 2]))
    np.testing.assert_array_equal(seq, index_to_one_hot(np.array([4, 0, 1, 2, 3], np.uint8)))  # N A C G T
    np.testing.assert_array_equal(tgt, [[4, 3, 5], [1, 0, 2]])  # bins reversed, tracks 0/1 swapped


def test_shift_pads_with_n():
    one_hot = index_to_one_hot(np.array([0, 1, 2, 3], np.uint8))
    np.testing.assert_array_equal(shift_sequence(one_hot, 2), index_to_one_hot(np.array([4, 4, 0, 1], np.uint8)))
    np.testing.assert_array_equal(shift_sequence(one_hot, -1), index_to_one_hot(np.array([1, 2, 3, 4], np.uint8)))


def test_augmentation_is_random_but_reproducible(synthetic):
    src = BasenjiSource(synthetic[1], "human", "train")
    aug = Augment(src.strand_pair)
    ex = src[0]
    outs = [aug.random_map(ex, np.random.default_rng(s)) for s in range(40)]
    flipped = sum(np.array_equal(o["target"], ex["target"][::-1][:, src.strand_pair]) for o in outs)
    assert 5 < flipped < 35
    again = aug.random_map(ex, np.random.default_rng(3))
    np.testing.assert_array_equal(again["sequence"], outs[3]["sequence"])


def test_batches_shuffle_and_resume_from_saved_state(synthetic):
    src = BasenjiSource(synthetic[1], "human", "train")
    ds = make_dataset(src, batch_size=4, seed=5, augment=True)
    it = iter(ds)
    first = next(it)
    assert first["sequence"].shape == (4, 16_384, 4) and first["sequence"].dtype == np.uint8
    assert first["target"].shape == (4, 112, 8) and first["target"].dtype == np.float16
    for _ in range(3):
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(4)]  # crosses the epoch boundary (5 batches per epoch)
    restored = iter(ds)
    restored.set_state(state)
    for e in expected:
        got = next(restored)
        np.testing.assert_array_equal(got["sequence"], e["sequence"])
        np.testing.assert_array_equal(got["target"], e["target"])
    other = next(iter(make_dataset(src, batch_size=4, seed=6, augment=True)))
    assert not np.array_equal(other["target"], first["target"])


def test_processes_read_disjoint_slices_covering_the_data(synthetic):
    src = BasenjiSource(synthetic[1], "human", "valid")  # 4 examples
    seen = []
    for p in range(2):
        ds = make_dataset(src, batch_size=1, shuffle=False, num_epochs=1, process_index=p, process_count=2)
        seen += [b["target"].tobytes() for b in ds]
    assert len(seen) == 4 and len(set(seen)) == 4


def test_worker_processes_give_the_same_batches(synthetic):
    src = BasenjiSource(synthetic[1], "mouse", "train")
    kwargs = dict(batch_size=2, seed=1, augment=True, num_epochs=1)
    single = [b["sequence"] for b in make_dataset(src, **kwargs)]
    multi = [b["sequence"] for b in make_dataset(src, workers=2, **kwargs)]
    assert len(single) == len(multi) == 10
    for a, b in zip(single, multi):
        np.testing.assert_array_equal(a, b)


def test_real_track_counts_reuse_the_real_targets_table(tmp_path):
    assert data_main(["synth", "--output", str(tmp_path), "--species", "mouse", "--seq-length", "2048",
                      "--crop-bp", "128", "--tracks", "mouse=1643", "--examples", "train=1,valid=1,test=1",
                      "--no-progress"]) == 0
    ours = open(tmp_path / "mouse" / "targets.txt").read().splitlines()
    # The real table, as recorded from the Basenji2 data set (package data).
    assert ours == open(os.path.join(REFERENCE_DIR, "targets_mouse.txt")).read().splitlines()
    assert len(ours) == 1 + 1643 and ours[1].split("\t")[2] == "ENCFF866ZTV"
    src_counts = convert(str(tmp_path), str(tmp_path / "store"), progress=False)
    assert src_counts == {"mouse": {"train": 1, "valid": 1, "test": 1}}
    assert BasenjiSource(str(tmp_path / "store"), "mouse", "test")[0]["target"].shape == (14, 1643)


def test_data_benchmark_reports_throughput(synthetic):
    from jax_basenji.bench import bench_pipeline

    row = bench_pipeline(BasenjiSource(synthetic[1], "human", "train"), batch_size=2, workers=0, seconds=0.2)
    assert row["examples"] > 0 and row["examples_per_s"] > 0
    assert row["target_gb_per_s"] == pytest.approx(row["examples_per_s"] * 112 * 8 * 2 / 1e9, rel=0.05, abs=1e-3)
