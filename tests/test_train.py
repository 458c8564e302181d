"""The training engine: outputs, NaN stop, config mismatch, bf16, initial weights, real Basenji2
widths, recipes. (Resuming: test_train_resume.py; devices and processes: test_train_distributed.py.)"""

import json
import os

import numpy as np
import pytest

from jax_basenji.checkpoint import CheckpointError, load_arrays
from jax_basenji.config import ModelConfig
from jax_basenji.data.__main__ import main as data_main
from jax_basenji.data.store import convert
from jax_basenji.data.tfrecord import read_records
from jax_basenji.train import main as train_main
from jax_basenji.train import train
from jax_basenji.train_config import TrainConfig
from tests.train_helpers import flat, make_store, small_run


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("train_data"))


def _tensorboard_scalars(workdir) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value)]} of the run's TensorBoard event files (TFRecords of Event protos)."""
    from tensorboardX.proto.event_pb2 import Event

    scalars = {}
    for name in sorted(os.listdir(workdir / "tensorboard")):
        for record in read_records(str(workdir / "tensorboard" / name), compression=None):
            event = Event.FromString(record)
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


@pytest.fixture(scope="module")
def run(store, tmp_path_factory):
    """A 6-round run of both species, validated at rounds 3 and 6: (its workdir, train()'s summary)."""
    workdir = tmp_path_factory.mktemp("train") / "run"
    return workdir, train(ModelConfig.tiny(), small_run(store, workdir), progress=False)


def test_training_writes_metrics_plots_tensorboard_and_a_predict_ready_model(store, run):
    workdir, summary = run
    records = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    valid = [r for r in records if r["split"] == "valid"]
    assert {(r["step"], r["species"]) for r in valid} == {(3, "human"), (3, "mouse"), (6, "human"), (6, "mouse")}
    # every assay of the species' tracks is reported (the synthetic targets.txt: CAGE pairs, ATAC, CHIP)
    from jax_basenji.data import BasenjiSource
    from jax_basenji.metrics import assays

    want_assays = {s: set(assays(BasenjiSource(store, s, "valid").targets)) for s in ("human", "mouse")}
    assert want_assays["human"] == {"CAGE", "ATAC", "CHIP_TF"}  # synthetic ChIP: "CHIP:synthetic human ..."
    for r in valid:
        assert {"step", "split", "species", "loss", "pearson_r", "pearson_r_by_assay"} <= set(r)
        assert set(r["pearson_r_by_assay"]) == want_assays[r["species"]]
        assert all(np.isfinite(v) for v in r["pearson_r_by_assay"].values())
    assert any(r["split"] == "train" and r["seq_per_s"] > 0 for r in records)
    assert all(0 <= r["data_wait_fraction"] <= 1 for r in records if r["split"] == "train")
    for png in ("loss.png", "pearson_r.png", "pearson_r_hist.png"):
        assert (workdir / png).stat().st_size > 1000
    assert _tensorboard_scalars(workdir)["valid/human/loss"] == [
        (r["step"], pytest.approx(r["loss"])) for r in valid if r["species"] == "human"]
    _, _, best_meta = load_arrays(str(workdir / "model_best"))  # a model checkpoint, as model/
    assert best_meta["selection"]["metric"] == "valid_loss" and best_meta["selection"]["round"] in (3, 6)
    arrays, cfg, _ = load_arrays(summary["model"])
    assert cfg.head_tracks == {"human": 8, "mouse": 4}
    assert np.isfinite(summary["human"]["loss"])


def _files(workdir) -> dict[str, tuple[int, int]]:
    """{path: (size, mtime)} of every file under `workdir`."""
    stats = {os.path.join(d, f): os.stat(os.path.join(d, f)) for d, _, names in os.walk(workdir) for f in names}
    return {path: (st.st_size, st.st_mtime_ns) for path, st in stats.items()}


def test_other_model_config_in_the_workdir_is_refused(store, run):
    """Refused before anything is written: the run's files are as they were."""
    workdir, _ = run
    before = _files(workdir)
    with pytest.raises(CheckpointError, match=r"holds a checkpoint of another model config: bn_momentum=0.9 "
                                              r"\(now 0.99\)"):
        train(ModelConfig.tiny(bn_momentum=0.99), small_run(store, workdir, steps=8), progress=False)
    assert _files(workdir) == before


def test_non_finite_loss_stops_with_a_clear_message(store, tmp_path, capsys):
    rc = train_main(["--data", store, "--workdir", str(tmp_path / "run"), "--model", "tiny", "--species", "human",
                     "--steps", "6", "--optimizer", "adam", "--lr", "1e30", "--clip-norm", "0",
                     "--checkpoint-every", "1", "--eval-every", "0", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 3 and "stopped. Last good checkpoint:" in err
    assert "became" in err


def test_precision_and_remat_are_run_options_not_architecture(store, tmp_path):
    """A bf16 run saves an fp32 model (predict/evaluate/finetune compute in fp32 unless asked), and
    resuming with another precision or --remat is not refused (the model config is the architecture)."""
    work = tmp_path / "run"
    bf16 = train(ModelConfig.tiny(), small_run(store, work, steps=3, eval_every=3, precision="bf16", remat=True,
                                        species=("human",)), progress=False)
    _, cfg, meta = load_arrays(bf16["model"])
    assert (cfg.dtype, cfg.remat) == ("float32", False)
    assert meta["train_config"]["precision"] == "bf16"
    resumed = train(ModelConfig.tiny(), small_run(store, work, steps=6, eval_every=3, precision="fp32",
                                           species=("human",)), progress=False)
    assert np.isfinite(resumed["human"]["loss"])


def test_real_basenji2_trains_on_cpu(tmp_path):
    """basenji2-double-prime at full widths and 5313 human tracks, 32,768 bp (128 bins)."""
    assert data_main(["synth", "--output", str(tmp_path / "b"), "--species", "human", "--seq-length", "32768",
                      "--crop-bp", "8192", "--tracks", "human=5313", "--examples", "train=2,valid=1,test=1",
                      "--no-progress"]) == 0
    convert(str(tmp_path / "b"), str(tmp_path / "s"), progress=False)
    tc = TrainConfig(data=str(tmp_path / "s"), workdir=str(tmp_path / "run"), species=("human",), batch_size=1,
                     steps=2, eval_every=2, eval_batches=1, checkpoint_every=2)  # the seed's SGD defaults
    summary = train(ModelConfig.basenji2_double_prime(), tc, progress=False)
    assert np.isfinite(summary["human"]["loss"])
    arrays, cfg, _ = load_arrays(summary["model"])
    assert cfg.head_tracks == {"human": 5313} and cfg.seq_length == 32_768
    assert arrays["dilated"][10]["conv1"]["kernel"].shape == (3, 768, 384)


def test_init_from_a_checkpoint_or_a_seed_pt(store, tmp_path):
    """--init-from: a jax_basenji checkpoint, or a seed .pt through the converter (lr 0 keeps them; Adam, as the
    module's run, so that both share its compiled programs)."""
    import torch

    from torch_ref import Basenji2 as TorchBasenji2

    torch.manual_seed(3)
    tmodel = TorchBasenji2(ModelConfig.tiny(heads={"human": 8, "mouse": 4}))
    torch.save({"module." + k: v for k, v in tmodel.state_dict().items()}, tmp_path / "seed.pt")
    frozen = dict(steps=1, lr=0.0, eval_every=1, checkpoint_every=1)
    first = train(ModelConfig.tiny(), small_run(store, tmp_path / "a", init_from=str(tmp_path / "seed.pt"), **frozen),
                  progress=False)
    got = flat(load_arrays(first["model"])[0])
    np.testing.assert_array_equal(got["stem/conv/kernel"], tmodel.state_dict()["conv_stem.conv_stem.0.0.weight"]
                                  .numpy().transpose(2, 1, 0))
    second = train(ModelConfig.tiny(), small_run(store, tmp_path / "b", init_from=first["model"], **frozen),
                   progress=False)
    again = flat(load_arrays(second["model"])[0])
    for k in got:
        if not k.endswith(("/mean", "/var", "/count")):  # BatchNorm statistics move in train mode
            np.testing.assert_array_equal(again[k], got[k], err_msg=k)


def test_run_options_apply_the_same_way_whatever_the_initial_weights(store, tmp_path):
    """--bn-momentum (and --remat) override the model's own value for a fresh model and a checkpoint
    alike (a checkpoint used to drop them); without it, a checkpoint keeps its own. One run shows that
    the model it saves has the run's value; the rest is how a run resolves its model config."""
    from jax_basenji.train.setup import resolve

    fresh = train(ModelConfig.tiny(), small_run(store, tmp_path / "fresh", steps=1, eval_every=0, species=("human",),
                                                bn_momentum=0.5), progress=False)["model"]
    assert load_arrays(fresh)[1].bn_momentum == 0.5  # the tiny preset's own is 0.9

    def resolved(**kw):
        tc = small_run(store, tmp_path / "unused", species=("human",), init_from=fresh, **kw)
        return resolve(ModelConfig.tiny(), tc, None, None).model_cfg

    assert resolved().bn_momentum == 0.5
    assert (resolved(bn_momentum=0.3, remat=True).bn_momentum, resolved(remat=True).remat) == (0.3, True)


@pytest.mark.parametrize("recipe, want", [
    (None, dict(optimizer="sgd", lr=0.15, momentum=0.99, clip_norm=2.0, batch_size=4, bn_momentum=None)),
    ("paper", dict(optimizer="sgd", lr=0.15, momentum=0.99, clip_norm=2.0, batch_size=4, bn_momentum=0.1)),
    ("seed", dict(optimizer="sgd", lr=1e-4, momentum=0.99, clip_norm=0.0, batch_size=4, bn_momentum=0.99)),
])
def test_recipes_set_their_flags_and_explicit_flags_win(recipe, want):
    from jax_basenji.finetune import parse_args as finetune_args
    from jax_basenji.train import parse_args, train_config_from_args

    extra = ["--recipe", recipe] if recipe else []
    tc = train_config_from_args(parse_args(["--data", "s", *extra]))
    assert {k: getattr(tc, k) for k in want} == want
    tc = train_config_from_args(parse_args(["--data", "s", *extra, "--lr", "0.5", "--bn-momentum", "0.3"]))
    assert (tc.lr, tc.bn_momentum) == (0.5, 0.3)
    ft = finetune_args(["--pretrained", "p", "--data", "s", *extra])
    assert {k: getattr(ft, k) for k in want} == want
