"""TFRecords -> store: TensorFlow-written fixtures, both sequence encodings,
resumable conversion, and one-line errors for every kind of bad input."""

import json
import os
import re
import shutil
import struct

import numpy as np
import pytest

from jax_basenji.data import BasenjiSource, DataError, RecordError
from jax_basenji.data.__main__ import main as data_main
from jax_basenji.data.store import convert
from jax_basenji.data.tfrecord import masked_crc, read_records, serialize_bytes_features, write_records

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "basenji_tf")


@pytest.fixture
def basenji_copy(tmp_path):
    """A writable copy of the TensorFlow-written fixture directory."""
    return shutil.copytree(FIXTURES, tmp_path / "basenji")


def test_tensorflow_written_records_read_back_bit_identical(tmp_path):
    counts = convert(FIXTURES, str(tmp_path / "store"), progress=False)
    assert counts == {"human": {"train": 3, "valid": 1, "test": 1}, "mouse": {"train": 2, "valid": 1, "test": 1}}
    expected = np.load(os.path.join(FIXTURES, "expected.npz"))
    for species in ("human", "mouse"):  # human: (L,) index records; mouse: (L, 4) bool one-hot
        for subset in ("train", "valid", "test"):
            src = BasenjiSource(str(tmp_path / "store"), species, subset)
            got = [src[i] for i in range(len(src))]
            seqs, tgts = expected[f"{species}/{subset}/sequence"], expected[f"{species}/{subset}/target"]
            assert len(got) == len(seqs)
            for g, s, t in zip(got, seqs, tgts):
                assert g["sequence"].dtype == np.uint8 and np.array_equal(g["sequence"], s)
                assert g["target"].dtype == np.float16 and g["target"].tobytes() == t.tobytes()


def test_our_writer_round_trips_and_tensorflow_framing(tmp_path):
    records = [serialize_bytes_features({"sequence": bytes([i]) * 7, "target": b"\x00\x3c" * i})
               for i in range(3)]
    path = str(tmp_path / "rt.tfr")
    write_records(path, records)
    assert list(read_records(path)) == records
    # the fixture files (TensorFlow's writer) are one zlib stream of CRC-framed records
    first = next(read_records(os.path.join(FIXTURES, "human", "tfrecords", "train-0.tfr")))
    assert len(first) > 1024


def _corrupt(path, mutate):
    """Rewrite a ZLIB TFRecord file with its raw frame bytes changed by `mutate`."""
    import zlib

    raw = zlib.decompress(open(path, "rb").read())
    open(path, "wb").write(zlib.compress(mutate(bytearray(raw))))


def test_crc_mismatch_names_file_and_record(basenji_copy, tmp_path):
    path = os.path.join(basenji_copy, "human", "tfrecords", "train-0.tfr")

    def flip_in_second_record(raw):
        (length,) = struct.unpack("<Q", raw[:8])
        second = 16 + length
        raw[second + 12 + 40] ^= 0xFF
        return raw

    _corrupt(path, flip_in_second_record)
    with pytest.raises(RecordError, match=r"train-0\.tfr: record 1: data CRC mismatch"):
        convert(str(basenji_copy), str(tmp_path / "store"), ["human"], progress=False)


def test_a_bit_flip_inside_the_zlib_stream_names_file_and_record(basenji_copy, tmp_path, capsys):
    """The compressed bytes themselves: zlib fails before any CRC is checked."""
    path = os.path.join(basenji_copy, "human", "tfrecords", "train-0.tfr")
    raw = bytearray(open(path, "rb").read())
    raw[len(raw) // 2] ^= 0x04
    open(path, "wb").write(bytes(raw))
    rc = data_main(["convert", "--input", str(basenji_copy), "--output", str(tmp_path / "s"), "--species", "human",
                    "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    assert re.search(r"train-0\.tfr: record \d+: (Error -3 while decompressing|.*CRC mismatch|truncated)", err), err
    assert not list((tmp_path / "s").rglob("*.tmp")) and not (tmp_path / "s" / "human" / "meta.json").exists()


def test_truncated_file(basenji_copy, tmp_path):
    path = os.path.join(basenji_copy, "mouse", "tfrecords", "valid-0.tfr")
    _corrupt(path, lambda raw: raw[:-100])
    with pytest.raises(RecordError, match=r"valid-0\.tfr: record 0: truncated record"):
        convert(str(basenji_copy), str(tmp_path / "store"), ["mouse"], progress=False)


def test_record_size_must_match_statistics(basenji_copy, tmp_path):
    stats_path = os.path.join(basenji_copy, "human", "statistics.json")
    stats = json.load(open(stats_path))
    stats["num_targets"] = 4
    json.dump(stats, open(stats_path, "w"))
    with open(os.path.join(basenji_copy, "human", "targets.txt"), "a") as f:
        f.write("3\t0\tFIX3\tfixture.w5\t32\t2\tmean\tDNASE:fixture 3\n")
    with pytest.raises(RecordError, match=r"train-0\.tfr: record 0: target has 24 bytes; statistics.json "
                                          r"implies 4 x 4 float16 = 32"):
        convert(str(basenji_copy), str(tmp_path / "store"), ["human"], progress=False)


def test_bed_rows_must_match_the_records(basenji_copy, tmp_path):
    bed = os.path.join(basenji_copy, "mouse", "sequences.bed")
    lines = open(bed).readlines()
    open(bed, "w").writelines(lines[1:])  # one train row fewer
    with pytest.raises(DataError, match=r"sequences.bed has 1 train rows; the records hold 2 examples"):
        convert(str(basenji_copy), str(tmp_path / "store"), ["mouse"], progress=False)


def test_statistics_counts_must_match_the_records(basenji_copy, tmp_path):
    os.remove(os.path.join(basenji_copy, "human", "tfrecords", "train-1.tfr"))
    with pytest.raises(DataError, match=r"train has 2 records in 1 files; statistics.json says train_seqs=3"):
        convert(str(basenji_copy), str(tmp_path / "store"), ["human"], progress=False)


def test_unknown_species_and_cli_error_line(basenji_copy, tmp_path, capsys):
    rc = data_main(["convert", "--input", str(basenji_copy), "--output", str(tmp_path / "s"),
                    "--species", "rat", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "no species 'rat'" in err


def test_conversion_resumes_and_keeps_finished_shards(basenji_copy, tmp_path):
    store = tmp_path / "store"
    bad = os.path.join(basenji_copy, "human", "tfrecords", "valid-0.tfr")
    good = open(bad, "rb").read()
    _corrupt(bad, lambda raw: raw[:-3])
    with pytest.raises(RecordError):
        convert(str(basenji_copy), str(store), ["human"], progress=False)
    finished = store / "human" / "train" / "train-0.json"
    assert finished.exists() and not (store / "human" / "valid" / "valid-0.json").exists()
    # Nothing half-written: no temporary shard, and no meta.json (written when every subset is done).
    assert not list(store.rglob("*.tmp")) and not (store / "human" / "meta.json").exists()
    stamp = os.stat(store / "human" / "train" / "train-0.tgt.f16").st_mtime_ns
    open(bad, "wb").write(good)  # the user fixes the file and re-runs
    assert convert(str(basenji_copy), str(store), ["human"], progress=False)["human"]["valid"] == 1
    assert os.stat(store / "human" / "train" / "train-0.tgt.f16").st_mtime_ns == stamp  # not redone
    assert len(BasenjiSource(str(store), "human", "valid")) == 1


def test_converting_other_inputs_into_an_existing_store_is_refused(basenji_copy, tmp_path, capsys):
    """A finished shard is reused only if it came from the same file (path, size, mtime): a store
    converted from other records used to be silently mixed with the new metadata."""
    store = tmp_path / "store"
    convert(str(basenji_copy), str(store), ["human"], progress=False)
    before = BasenjiSource(str(store), "human", "train")[0]["target"].copy()
    other = shutil.copytree(basenji_copy, tmp_path / "other")  # same names, other files
    for name in os.listdir(other / "human" / "tfrecords"):
        path = other / "human" / "tfrecords" / name
        examples = _examples(path)
        for ex in examples:
            ex["target"] = (np.frombuffer(ex["target"], np.float16) + 1).astype(np.float16).tobytes()
        write_records(str(path), [serialize_bytes_features(ex) for ex in examples])
    argv = ["convert", "--input", str(other), "--output", str(store), "--species", "human", "--no-progress"]
    assert data_main(argv) == 2
    err = capsys.readouterr().err
    assert "train-0.json was converted from another input" in err and "--overwrite" in err
    np.testing.assert_array_equal(BasenjiSource(str(store), "human", "train")[0]["target"], before)
    assert data_main([*argv, "--overwrite"]) == 0
    np.testing.assert_array_equal(BasenjiSource(str(store), "human", "train")[0]["target"],
                                  (before.astype(np.float32) + 1).astype(np.float16))


def _examples(path):
    from jax_basenji.data.tfrecord import parse_bytes_features

    return [dict(parse_bytes_features(r, ("sequence", "target"))) for r in read_records(str(path))]


def test_unconverted_subset_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="is not a converted subset"):
        BasenjiSource(str(tmp_path), "human", "train")


def test_masked_crc_matches_tensorflow_constant():
    # TensorFlow's masked CRC32C of an empty payload (crc 0 rotated, plus the mask delta)
    assert masked_crc(b"") == 0xA282EAD8
