"""`python -m jax_basenji.predict`: batched predictions and one-line errors."""

import numpy as np
import pytest

from jax_basenji import predict
from jax_basenji.checkpoint import load_model, save_model
from jax_basenji.config import ModelConfig
from jax_basenji.model import build_model
from tests.forward import forward


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    model = build_model(ModelConfig.tiny(), seed=7)
    model.train()
    forward(model, np.eye(4, dtype=np.float32)[np.random.default_rng(0).integers(0, 4, (2, 16_384))])
    save_model(str(path), model)
    return str(path)


def _seqs(n, length=16_384, seed=0, dtype=np.uint8):
    return np.eye(4, dtype=dtype)[np.random.default_rng(seed).integers(0, 4, (n, length))]


def _run(ckpt, tmp_path, seqs, *extra, head="human"):
    np.save(tmp_path / "in.npy", seqs)
    return predict.main(["--checkpoint", ckpt, "--head", head, "--input", str(tmp_path / "in.npy"),
                         "--output", str(tmp_path / "out.npy"), "--no-progress", *extra])


def test_predictions_match_the_model_whatever_the_batching(ckpt, tmp_path):
    seqs = _seqs(5)
    assert _run(ckpt, tmp_path, seqs, "--batch-size", "2") == 0  # 2 + 2 + a padded 1
    out = np.load(tmp_path / "out.npy")
    assert out.shape == (5, 112, 8) and out.dtype == np.float32
    model, _ = load_model(ckpt)
    want = np.asarray(forward(model, seqs.astype(np.float32), "human"))
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.bool_, np.float32, np.float64, np.int64])
def test_one_hot_dtypes_give_the_same_predictions(ckpt, tmp_path, dtype):
    assert _run(ckpt, tmp_path, _seqs(2, dtype=np.uint8)) == 0
    ref = np.load(tmp_path / "out.npy")
    assert _run(ckpt, tmp_path, _seqs(2, dtype=dtype), "--overwrite") == 0
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), ref)


@pytest.mark.parametrize("length, head, tracks", [(20_480, "mouse", 4), (8_192, "human", 8)])
def test_other_valid_lengths_and_n_rows_match_the_model(ckpt, tmp_path, length, head, tracks):
    """Inputs longer or shorter than the training length: every bin of the whole input (N rows as the
    checkpoint's encoding, all-zero here) equals the model called directly."""
    seqs = _seqs(2, length=length)
    seqs[0, 100:200] = 0  # N
    seqs[1, length // 2:length // 2 + 50] = 0
    assert _run(ckpt, tmp_path, seqs, head=head) == 0
    out = np.load(tmp_path / "out.npy")
    assert out.shape == (2, length // 128 - 16, tracks)
    model, _ = load_model(ckpt)
    want = np.asarray(forward(model, seqs.astype(np.float32), head))
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seqs,head,message", [
    (np.zeros((16_384, 4), np.uint8), "human", "has shape (16384, 4); expected [N, length, 4]"),
    (np.zeros((1, 16_384, 5), np.uint8), "human", "has last dimension 5; expected 4"),
    (np.zeros((1, 16_100, 4), np.uint8), "human", "not a positive multiple of the 128 bp bin width"),
    (np.zeros((1, 2_048, 4), np.uint8), "human", "leaves no bins after cropping"),
    (np.full((1, 16_384, 4), 0.25, np.float32), "human", "sequence 0 is not one-hot at position 0"),
    (np.ones((1, 16_384, 4), np.uint8), "human", "sequence 0 is not one-hot at position 0"),
    (np.zeros((1, 16_384, 4), "U1"), "human", "has dtype <U1"),
    (np.zeros((1, 16_384, 4), np.uint8), "finetune", "unknown head 'finetune'; this checkpoint has ['human', 'mouse']"),
])
def test_bad_input_is_one_clear_line(ckpt, tmp_path, capsys, seqs, head, message):
    assert _run(ckpt, tmp_path, seqs, head=head) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert not (tmp_path / "out.npy").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["in.npy"]  # no temporary left behind


def test_error_in_a_later_batch_keeps_an_existing_output(ckpt, tmp_path, capsys):
    (tmp_path / "out.npy").write_bytes(b"earlier results")
    seqs = _seqs(5)
    seqs[4, 7] = [1, 1, 0, 0]
    assert _run(ckpt, tmp_path, seqs, "--batch-size", "2", "--overwrite") == 2
    assert "sequence 4 is not one-hot at position 7" in capsys.readouterr().err
    assert (tmp_path / "out.npy").read_bytes() == b"earlier results"


def test_existing_output_needs_overwrite(ckpt, tmp_path, capsys):
    (tmp_path / "out.npy").write_bytes(b"keep me")
    assert _run(ckpt, tmp_path, _seqs(1)) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "out.npy").read_bytes() == b"keep me"


def test_missing_checkpoint(tmp_path, capsys):
    np.save(tmp_path / "in.npy", _seqs(1))
    rc = predict.main(["--checkpoint", str(tmp_path / "nope"), "--head", "human",
                       "--input", str(tmp_path / "in.npy"), "--output", str(tmp_path / "o.npy")])
    assert rc == 2 and "is not a jax_basenji checkpoint" in capsys.readouterr().err


def _targets_txt(path, pairs):
    """A targets.txt of len(pairs) tracks with the given strand_pair column."""
    rows = ["index\tgenome\tidentifier\tfile\tclip\tscale\tsum_stat\tdescription\tstrand\tstrand_pair"]
    rows += [f"{i}\t0\tT{i}\tf\t32\t2\tsum\tCAGE:t{i}\t{'+' if p > i else '-' if p < i else '.'}\t{p}"
             for i, p in enumerate(pairs)]
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def test_rc_and_shift_ensemble_is_the_mean_of_its_members(ckpt, tmp_path):
    """Each member computed independently in numpy: shifted input, reverse complement flipped
    back on bins, stranded tracks (0<->1, 4<->5) swapped with their pair."""
    from jax_basenji.data.augment import reverse_complement, shift_sequence

    seqs = _seqs(3, seed=4)
    pairs = [1, 0, 2, 3, 5, 4, 6, 7]
    argv = ["--rc", "--shifts", "-1", "0", "1", "--targets-txt", _targets_txt(tmp_path / "t.txt", pairs)]
    assert _run(ckpt, tmp_path, seqs, "--batch-size", "2", *argv) == 0
    got = np.load(tmp_path / "out.npy")

    model, _ = load_model(ckpt)
    members = []
    for shift in (-1, 0, 1):
        shifted = np.stack([shift_sequence(s.astype(np.float32), shift) for s in seqs])
        members.append(np.asarray(forward(model, shifted, "human")))
        rc = np.stack([reverse_complement(s, np.zeros((1, 8)))[0] for s in shifted])
        members.append(np.asarray(forward(model, rc, "human"))[:, ::-1][:, :, pairs])
    want = np.mean(members, axis=0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    plain = np.asarray(forward(model, seqs.astype(np.float32), "human"))
    assert np.abs(got - plain).max() > 1e-3  # the ensemble is not the plain prediction


def test_ensemble_errors_are_one_line(ckpt, tmp_path, capsys):
    assert _run(ckpt, tmp_path, _seqs(1), "--rc", "--targets-txt",
                _targets_txt(tmp_path / "t.txt", [1, 0, 2])) == 2
    assert "the targets table has 3 tracks; head 'human' has 8" in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [
    ("", "is empty"),
    ("index\tidentifier\tstrand_pair\n0\tA\tx\n", "strand_pair is not an integer"),
    ("index\tidentifier\tstrand_pair\n0\tA\n", ":2: 2 fields; the header has 3"),
    ("index\tidentifier\n" + "".join(f"{i}\tT{i}\n" for i in range(5)), "the targets table has 5 tracks"),
])
def test_a_malformed_targets_table_is_one_line(ckpt, tmp_path, capsys, content, message):
    (tmp_path / "t.txt").write_text(content)
    assert _run(ckpt, tmp_path, _seqs(1), "--rc", "--targets-txt", str(tmp_path / "t.txt")) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_shifts_beyond_the_input_are_refused(ckpt, tmp_path, capsys):
    assert _run(ckpt, tmp_path, _seqs(1), "--shifts", "0", "16384") == 2
    assert "move the whole 16384 bp input out" in capsys.readouterr().err


def test_rc_takes_the_store_strand_pairs_without_a_targets_table(ckpt):
    from jax_basenji.predict.core import load_predictor

    pairs = np.array([1, 0, 2, 3, 5, 4, 6, 7])
    rc, _ = load_predictor(ckpt, "human", predict.Ensemble(rc=True), strand_pair=pairs)
    assert rc.ensemble.strand_pair == tuple(pairs)
    given, _ = load_predictor(ckpt, "human", predict.Ensemble(rc=True, strand_pair=tuple(range(8))), strand_pair=pairs)
    assert given.ensemble.strand_pair == tuple(range(8))  # --targets-txt wins over the store's table
