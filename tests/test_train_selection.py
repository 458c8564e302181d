"""WORKDIR/model_best (the best validation by --select / --select-species), early stopping
(--patience) and the N encoding (--n-value) of a training run."""

import json
import os

import numpy as np
import pytest

from jax_basenji.checkpoint import load_arrays, read_meta
from jax_basenji.config import ModelConfig
from jax_basenji.predict import main as predict_main
from jax_basenji.train import main as train_main
from jax_basenji.train import train
from jax_basenji.train.selection import Selection
from jax_basenji.train_config import TrainConfig
from tests.train_helpers import flat, make_store, small_run


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("selection_data"))


def _valid_rows(workdir):
    return [r for r in map(json.loads, open(os.path.join(workdir, "metrics.jsonl"))) if r["split"] == "valid"]


def test_model_best_is_the_best_logged_validation_and_predicts(store, tmp_path):
    """Six validations of both species; --select valid_loss --select-species mean picks the round
    whose mean loss over species is the lowest in metrics.jsonl, model_best holds weights other than
    the last round's (it was not re-saved from the final state), and it is a model checkpoint that
    predict reads. SGD at lr 0.5 with momentum 0.99 overshoots: the loss falls for two or three rounds,
    then rises to several times its first value by round 6, a margin far beyond any change of rounding."""
    config = dict(eval_every=1, optimizer="sgd", lr=0.5, momentum=0.99, select="valid_loss", select_species="mean")
    summary = train(ModelConfig.tiny(), small_run(store, tmp_path / "run", steps=6, **config), progress=False)
    rows = _valid_rows(tmp_path / "run")
    by_round = {}
    for r in rows:
        by_round.setdefault(r["step"], []).append(r["loss"])
    assert sorted(by_round) == [1, 2, 3, 4, 5, 6]
    best_round = min(by_round, key=lambda k: np.mean(by_round[k]))
    meta = read_meta(summary["model_best"])
    assert meta["selection"]["round"] == best_round == summary["selection"]["round"]
    assert meta["selection"]["best"] == pytest.approx(np.mean(by_round[best_round]), rel=1e-12)
    assert meta["n_value"] == 0.0  # a fresh model trained on the store's encoding

    assert best_round < 6  # else the last round's weights would pass as the best's
    best, last = flat(load_arrays(summary["model_best"])[0]), flat(load_arrays(summary["model"])[0])
    assert best.keys() == last.keys() and any(not np.array_equal(best[k], last[k]) for k in last)

    x = np.eye(4, dtype=np.float32)[np.random.default_rng(0).integers(0, 4, (2, 16_384))]
    np.save(tmp_path / "x.npy", x)
    assert predict_main(["--checkpoint", summary["model_best"], "--head", "human", "--input",
                         str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy"), "--no-progress"]) == 0
    assert np.load(tmp_path / "y.npy").shape == (2, 112, 8)


def test_pearson_r_selects_the_highest_mean_over_species_and_never_a_nan():
    """--select pearson_r: higher is better, "mean" averages the species, a NaN validation is never
    the best and counts towards --patience."""
    tc = TrainConfig(data="x", select="pearson_r", select_species="mean", patience=2)
    sel = Selection.for_run(tc)
    summaries = [{"human": {"pearson_r": 0.1, "loss": 1.0}, "mouse": {"pearson_r": 0.3, "loss": 1.0}},
                 {"human": {"pearson_r": 0.4, "loss": 2.0}, "mouse": {"pearson_r": 0.2, "loss": 2.0}},
                 {"human": {"pearson_r": float("nan"), "loss": 0.5}, "mouse": {"pearson_r": 0.9, "loss": 0.5}},
                 {"human": {"pearson_r": 0.5, "loss": 0.1}, "mouse": {"pearson_r": 0.0, "loss": 0.1}}]
    assert [sel.update(s, step) for step, s in enumerate(summaries, 1)] == [True, True, False, False]
    assert (sel.round, sel.best, sel.stale, sel.stopped) == (2, pytest.approx(0.3), 2, True)


def test_patience_stops_early_with_exit_0_and_a_rerun_trains_no_further(store, tmp_path, capsys):
    """With a learning rate of 0 and frozen BatchNorm statistics no validation improves on the
    first: --patience 1 with a validation every 5 rounds stops at round 10 (a round whose training
    losses are logged already), model_best is round 5's, and re-running the same command resumes
    the stopped run instead of training on."""
    argv = ["--data", store, "--workdir", str(tmp_path / "run"), "--model", "tiny", "--species", "human",
            "--steps", "40", "--batch-size", "4", "--lr", "0", "--bn-momentum", "0", "--eval-every", "5",
            "--eval-batches", "1", "--checkpoint-every", "20", "--patience", "1", "--no-progress"]
    assert train_main(argv) == 0
    out = capsys.readouterr()
    assert "stopping early at round 10" in out.out + out.err
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert [r["step"] for r in rows if r["split"] == "valid"] == [5, 10]
    assert [(r["step"], r["best_round"]) for r in rows if r["split"] == "stop"] == [(10, 5)]
    assert read_meta(str(tmp_path / "run" / "model_best"))["selection"]["round"] == 5
    assert train_main(argv) == 0
    assert "resumed from round 10" in capsys.readouterr().err
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert max(r["step"] for r in rows if r["split"] == "train") == 10


def test_n_value_fills_n_positions_and_is_recorded(store, tmp_path):
    """--n-value 0.25 (kipoiseq's encoding, the seed's) sets every channel of N positions to 0.25
    in training; the model records it, and a seed .pt's initial weights default to it."""
    import torch

    from torch_ref import Basenji2 as TorchBasenji2

    summary = train(ModelConfig.tiny(), small_run(store, tmp_path / "quarter", steps=1, eval_every=1,
                                                  species=("human",), n_value=0.25), progress=False)
    assert read_meta(summary["model"])["n_value"] == 0.25
    torch.save(TorchBasenji2(ModelConfig.tiny(heads={"human": 8})).state_dict(), tmp_path / "seed.pt")
    seeded = train(ModelConfig.tiny(), small_run(store, tmp_path / "seed", steps=1, eval_every=1,
                                                 species=("human",), init_from=str(tmp_path / "seed.pt")),
                   progress=False)
    assert read_meta(seeded["model"])["n_value"] == 0.25
    assert load_arrays(seeded["model"])[1].head_tracks == {"human": 8}
