"""The training engine: outputs, resume after kill -9, sharded == single device,
NaN stop, config mismatch, bf16, real Basenji2 widths."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from flax.traverse_util import flatten_dict

from jax_basenji.checkpoint import CheckpointError, load_arrays
from jax_basenji.config import ModelConfig
from jax_basenji.data.__main__ import main as data_main
from jax_basenji.data.store import convert
from jax_basenji.train import main as train_main
from jax_basenji.train import train
from jax_basenji.train_config import TrainConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_data")
    assert data_main(["synth", "--output", str(root / "basenji"), "--seq-length", "16384",
                      "--tracks", "human=8,mouse=4", "--examples", "train=16,valid=8,test=8",
                      "--no-progress"]) == 0
    convert(str(root / "basenji"), str(root / "store"), progress=False)
    return str(root / "store")


def _tc(store, workdir, **kw):
    base = dict(data=store, workdir=str(workdir), steps=6, batch_size=4, optimizer="adam", lr=1e-3,
                momentum=0.9, eval_every=3, eval_batches=2, checkpoint_every=3)
    return TrainConfig(**{**base, **kw})


def _flat(tree):
    return {"/".join(map(str, path)): np.asarray(v) for path, v in flatten_dict(tree).items()}


def test_training_writes_metrics_plots_tensorboard_and_a_predict_ready_model(store, tmp_path):
    summary = train(ModelConfig.tiny(), _tc(store, tmp_path / "run"), progress=False)
    records = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    valid = [r for r in records if r["split"] == "valid"]
    assert {(r["step"], r["species"]) for r in valid} == {(3, "human"), (3, "mouse"), (6, "human"), (6, "mouse")}
    # every assay of the species' tracks is reported (the synthetic targets.txt: CAGE pairs, ATAC, CHIP)
    from jax_basenji.data import BasenjiSource
    from jax_basenji.metrics import assays

    want_assays = {s: set(assays(BasenjiSource(store, s, "valid").targets)) for s in ("human", "mouse")}
    assert want_assays["human"] == {"CAGE", "ATAC", "CHIP"}
    for r in valid:
        assert {"step", "split", "species", "loss", "pearson_r", "pearson_r_by_assay"} <= set(r)
        assert set(r["pearson_r_by_assay"]) == want_assays[r["species"]]
        assert all(np.isfinite(v) for v in r["pearson_r_by_assay"].values())
    assert any(r["split"] == "train" and r["seq_per_s"] > 0 for r in records)
    for png in ("loss.png", "pearson_r.png", "pearson_r_hist.png"):
        assert (tmp_path / "run" / png).stat().st_size > 1000
    assert os.listdir(tmp_path / "run" / "tensorboard")
    assert os.listdir(tmp_path / "run" / "checkpoints" / "best")
    arrays, cfg, _ = load_arrays(summary["model"])
    assert cfg.head_tracks == {"human": 8, "mouse": 4}
    assert np.isfinite(summary["human"]["loss"])


def test_other_model_config_in_the_workdir_is_refused(store, tmp_path):
    train(ModelConfig.tiny(), _tc(store, tmp_path / "run", steps=3), progress=False)
    with pytest.raises(CheckpointError, match=r"holds a checkpoint of another model config: bn_momentum=0.9 "
                                              r"\(now 0.99\)"):
        train(ModelConfig.tiny(bn_momentum=0.99), _tc(store, tmp_path / "run", steps=4), progress=False)


def test_non_finite_loss_stops_with_a_clear_message(store, tmp_path, capsys):
    rc = train_main(["--data", store, "--workdir", str(tmp_path / "run"), "--model", "tiny", "--species", "human",
                     "--steps", "6", "--optimizer", "sgd", "--lr", "1e30", "--clip-norm", "0",
                     "--checkpoint-every", "1", "--eval-every", "0", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 3 and "stopped. Last good checkpoint:" in err
    assert "became" in err


def test_precision_and_remat_are_run_options_not_architecture(store, tmp_path):
    """A bf16 run saves an fp32 model (predict/evaluate/finetune compute in fp32 unless asked), and
    resuming with another precision or --remat is not refused (the model config is the architecture)."""
    work = tmp_path / "run"
    bf16 = train(ModelConfig.tiny(), _tc(store, work, steps=3, eval_every=3, precision="bf16", remat=True,
                                        species=("human",)), progress=False)
    _, cfg, meta = load_arrays(bf16["model"])
    assert (cfg.dtype, cfg.remat) == ("float32", False)
    assert meta["train_config"]["precision"] == "bf16"
    resumed = train(ModelConfig.tiny(), _tc(store, work, steps=6, eval_every=3, precision="fp32",
                                           species=("human",)), progress=False)
    assert np.isfinite(resumed["human"]["loss"])


def _run_train(store, workdir, *extra, wait=True):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-m", "jax_basenji.train", "--data", store, "--workdir", str(workdir),
           "--model", "tiny", "--optimizer", "adam", "--lr", "1e-3", "--momentum", "0.9",
           "--eval-every", "0", "--eval-batches", "1", "--no-progress", *extra]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if wait:
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out[-3000:]
    return proc


def test_kill_9_and_resume_gives_the_uninterrupted_result(store, tmp_path):
    args = ("--steps", "12", "--checkpoint-every", "4", "--batch-size", "4")
    _run_train(store, tmp_path / "straight", *args)
    proc = _run_train(store, tmp_path / "killed", *args, wait=False)
    marker = tmp_path / "killed" / "checkpoints" / "latest" / "8"
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "model").exists()
    _run_train(store, tmp_path / "killed", *args)
    a = _flat(load_arrays(str(tmp_path / "straight" / "model"))[0])
    b = _flat(load_arrays(str(tmp_path / "killed" / "model"))[0])
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _sharded_steps(store, out, devices=1, distributed=None):
    """tests/sharded_steps.py in subprocesses: float64 rounds on `devices` simulated devices,
    or as `distributed` processes joined by jax.distributed on localhost."""
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
           "JAX_ENABLE_X64": "1", "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, os.path.join(ROOT, "tests", "sharded_steps.py"), store, str(out)]
    if distributed:
        with socket.socket() as sock:
            sock.bind(("localhost", 0))
            port = sock.getsockname()[1]
        procs = [subprocess.Popen(cmd + [str(port), str(distributed), str(i)], cwd=ROOT, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for i in range(distributed)]
    else:
        procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)]
    for proc in procs:
        output, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, output[-3000:]
    result = dict(np.load(out))
    return int(result.pop("devices")), result


def _assert_same_training(a, b):
    # Conv biases feed a train-mode BatchNorm, which removes them: their gradient is 0
    # up to rounding, so only their scale (~1e-17) is checked.
    biases = [k for k in a if k.endswith(("'conv']['bias']", "'conv1']['bias']", "'conv2']['bias']"))]
    assert len(biases) == 1 + 6 + 2 * 4 + 1
    for k in a:
        if k in biases:
            assert np.abs(b[k]).max() < 1e-9, k
        else:
            np.testing.assert_allclose(b[k], a[k], rtol=1e-9, atol=1e-12, err_msg=k)


def test_eight_devices_and_two_processes_equal_one_device(store, tmp_path):
    """Global batch 8 on 1 device, on 8 simulated devices (1 example each), and on 2
    processes joined by jax.distributed (CPU collectives, 4 examples each): 3 rounds of
    both species with dropout and augmentation, in float64. (In float32 the runs
    differ by up to 1e-2 upstream of the max-pools, where rounding decides near-ties,
    see parity_tests/test_train_mode.py: that says nothing about the sharding.)"""
    n1, one = _sharded_steps(store, tmp_path / "one.npz", devices=1)
    n8, eight = _sharded_steps(store, tmp_path / "eight.npz", devices=8)
    n2, two = _sharded_steps(store, tmp_path / "two.npz", distributed=2)
    assert (n1, n8, n2) == (1, 8, 2)
    _assert_same_training(one, eight)
    _assert_same_training(one, two)


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
    """--init-from: a jax_basenji checkpoint, or a seed .pt through the converter (lr 0 keeps them)."""
    import torch

    from torch_ref import Basenji2 as TorchBasenji2

    torch.manual_seed(3)
    tmodel = TorchBasenji2(ModelConfig.tiny(heads={"human": 8, "mouse": 4}))
    torch.save({"module." + k: v for k, v in tmodel.state_dict().items()}, tmp_path / "seed.pt")
    frozen = dict(steps=1, optimizer="sgd", lr=0.0, eval_every=1, checkpoint_every=1)
    first = train(ModelConfig.tiny(), _tc(store, tmp_path / "a", init_from=str(tmp_path / "seed.pt"), **frozen),
                  progress=False)
    got = _flat(load_arrays(first["model"])[0])
    np.testing.assert_array_equal(got["stem/conv/kernel"], tmodel.state_dict()["conv_stem.conv_stem.0.0.weight"]
                                  .numpy().transpose(2, 1, 0))
    second = train(ModelConfig.tiny(), _tc(store, tmp_path / "b", init_from=first["model"], **frozen),
                   progress=False)
    again = _flat(load_arrays(second["model"])[0])
    for k in got:
        if not k.endswith(("/mean", "/var", "/count")):  # BatchNorm statistics move in train mode
            np.testing.assert_array_equal(again[k], got[k], err_msg=k)


def test_run_options_apply_the_same_way_whatever_the_initial_weights(store, tmp_path):
    """--bn-momentum (and --remat) override the model's own value for a fresh model, a checkpoint
    and a .pt alike (a checkpoint used to drop them)."""
    first = train(ModelConfig.tiny(), _tc(store, tmp_path / "a", steps=1, eval_every=1, species=("human",)),
                  progress=False)
    for init in (None, first["model"]):
        run = train(ModelConfig.tiny(), _tc(store, tmp_path / f"b{init is None}", steps=1, eval_every=1,
                                            species=("human",), init_from=init, bn_momentum=0.5),
                    progress=False)
        assert load_arrays(run["model"])[1].bn_momentum == 0.5
    kept = train(ModelConfig.tiny(), _tc(store, tmp_path / "c", steps=1, eval_every=1, species=("human",),
                                         init_from=first["model"]), progress=False)
    assert load_arrays(kept["model"])[1].bn_momentum == 0.9  # None: the checkpoint's own


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
