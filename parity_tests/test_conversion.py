"""Seed checkpoints: exact state_dict layout, conversion both ways, the
fine-tuning wrapper, the `module.` prefix, bit-identical round trips, clear
errors, and proof that a broken conversion cannot pass the parity checks."""

import os

import numpy as np
import pytest
import torch

from jax_basenji import convert, predict
from jax_basenji.convert import table as convert_table
from jax_basenji.checkpoint import load_model, read_meta
from jax_basenji.config import ModelConfig
from jax_basenji.convert import model_from_torch
from jax_basenji.predict import Predictor
from jax_basenji.convert import ConversionError
from parity_tests.helpers import calibrated_torch_model, one_hot, rel_err
from torch_ref import Basenji2 as TorchBasenji2
from torch_ref import FineTunedBasenji2, load_seed_state_dict

SEED_KEYS = os.path.join(os.path.dirname(__file__), "fixtures", "seed_state_dict_keys.tsv")
REL_TOL = 1e-4


def _reference_keys():
    with open(SEED_KEYS) as f:
        rows = [line.rstrip("\n").split("\t") for line in f][1:]
    return [(k, tuple(int(d) for d in s.strip("[]").split(",") if d.strip()), dt) for k, s, dt in rows]


@pytest.mark.parametrize("variant", ["basenji2-double-prime", "basenji2-prime"])
def test_torch_ref_state_dict_equals_the_seed_layout(variant):
    sd = TorchBasenji2(ModelConfig.preset(variant)).state_dict()
    mine = [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in sd.items()]
    assert mine == _reference_keys()  # keys, shapes, dtypes and order


def test_parameter_counts_match_the_spec():
    full = TorchBasenji2(ModelConfig())
    human = TorchBasenji2(ModelConfig(heads={"human": 5313}))
    assert sum(p.numel() for p in full.parameters()) == 32_618_976
    assert sum(p.numel() for p in human.parameters()) == 30_093_685


def _save_seed_pt(model, path, module_prefix):
    sd = model.state_dict()
    torch.save({("module." if module_prefix else "") + k: v for k, v in sd.items()}, path)


@pytest.mark.parametrize("variant,module_prefix", [("basenji2-prime", True), ("basenji2-double-prime", False)])
def test_seed_pt_converts_and_predicts_at_full_size(tmp_path, variant, module_prefix):
    """CLI path on a real-size checkpoint: .pt -> JAX checkpoint -> predict at 131,072 bp."""
    cfg = ModelConfig.preset(variant)
    tmodel = calibrated_torch_model(cfg, seed=3, calib_length=32_768)
    pt, ckpt = tmp_path / "seed.pt", tmp_path / "ckpt"
    _save_seed_pt(tmodel, pt, module_prefix)
    load_seed_state_dict(TorchBasenji2(cfg), torch.load(pt, weights_only=True))  # strict load

    assert convert.main(["torch-to-jax", "--variant", variant, "--input", str(pt), "--output", str(ckpt)]) == 0
    meta = read_meta(str(ckpt))
    assert meta["model_config"]["variant"] == variant and meta["torch_new_head"] is None

    x = one_hot(1, 131_072, seed=4, n_fraction=0.01).astype(np.uint8)
    np.save(tmp_path / "x.npy", x)
    assert predict.main(["--checkpoint", str(ckpt), "--head", "mouse", "--input", str(tmp_path / "x.npy"),
                         "--output", str(tmp_path / "y.npy"), "--no-progress"]) == 0
    with torch.no_grad():
        want = tmodel(torch.from_numpy(x), "mouse").numpy()
    got = np.load(tmp_path / "y.npy")
    assert got.shape == (1, 896, 1643) and got.dtype == np.float32
    assert rel_err(got, want) <= REL_TOL


def _assert_bit_identical(a, b):
    assert list(a) == list(b)  # same keys, same order
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert torch.equal(a[k], b[k]), k


def test_round_trip_is_bit_identical_at_full_size(tmp_path):
    cfg = ModelConfig.basenji2_double_prime()
    tmodel = TorchBasenji2(cfg)
    with torch.no_grad():  # non-default statistics and counters must survive too
        for name, buf in tmodel.named_buffers():
            buf.copy_(torch.randint(1, 10**6, ()) if buf.dtype == torch.int64 else torch.rand_like(buf))
    pt, ckpt, back = tmp_path / "a.pt", tmp_path / "ckpt", tmp_path / "b.pt"
    torch.save(tmodel.state_dict(), pt)
    assert convert.main(["torch-to-jax", "--variant", cfg.variant, "--input", str(pt), "--output", str(ckpt)]) == 0
    assert convert.main(["jax-to-torch", "--input", str(ckpt), "--output", str(back)]) == 0
    _assert_bit_identical(torch.load(pt, weights_only=True), torch.load(back, weights_only=True))


def _finetuned(cfg, tracks=35, seed=5):
    pretrained = calibrated_torch_model(cfg, seed=seed)
    wrapper = FineTunedBasenji2(pretrained, tracks)
    wrapper.eval()
    return wrapper


def test_finetuned_wrapper_keys():
    wrapper = FineTunedBasenji2(TorchBasenji2(ModelConfig()), tracks=72)
    keys = list(wrapper.state_dict())
    seed_keys = [k for k, _, _ in _reference_keys()]
    assert keys == ["model.pretrained_model." + k for k in seed_keys] + ["new_head.head.0.weight",
                                                                           "new_head.head.0.bias"]
    assert wrapper.state_dict()["new_head.head.0.weight"].shape == (72, 1536)
    assert not any(p.requires_grad for p in wrapper.model.pretrained_model.output_heads.parameters())


@pytest.mark.parametrize("head_name", [None, "atac"])
def test_finetuned_checkpoint_converts_predicts_and_round_trips(tmp_path, head_name):
    cfg = ModelConfig.tiny(variant="basenji2-prime")
    wrapper = _finetuned(cfg)
    pt, ckpt, back = tmp_path / "ft.pt", tmp_path / "ckpt", tmp_path / "back.pt"
    _save_seed_pt(wrapper, pt, module_prefix=True)
    (tmp_path / "cfg.json").write_text(cfg.to_json())
    args = ["torch-to-jax", "--variant", cfg.variant, "--config", str(tmp_path / "cfg.json"),
            "--input", str(pt), "--output", str(ckpt)]
    assert convert.main(args + (["--head-name", head_name] if head_name else [])) == 0

    name = head_name or "finetune"
    jmodel, meta = load_model(str(ckpt))
    assert meta["torch_new_head"] == name
    assert jmodel.cfg.head_tracks == {"human": 8, "mouse": 4, name: 35}
    x = one_hot(3, cfg.seq_length, seed=6)
    with torch.no_grad():
        want = wrapper(torch.from_numpy(x)).numpy()
        want_human = wrapper.model.pretrained_model(torch.from_numpy(x), "human").numpy()
    assert rel_err(Predictor(jmodel, name)(x), want) <= REL_TOL
    assert rel_err(Predictor(jmodel, "human")(x), want_human) <= REL_TOL

    assert convert.main(["jax-to-torch", "--input", str(ckpt), "--output", str(back)]) == 0
    original = {k.removeprefix("module."): v for k, v in torch.load(pt, weights_only=True).items()}
    _assert_bit_identical(original, torch.load(back, weights_only=True))


# ----- clear errors --------------------------------------------------------------------

def _tiny_sd():
    return {k: v.numpy() for k, v in TorchBasenji2(ModelConfig.tiny()).state_dict().items()}


def test_missing_and_unexpected_keys_are_named():
    sd = _tiny_sd()
    del sd["dilated_layers.dilated_layers.2.3.weight"]
    sd["dilated_layers.dilated_layers.2.5.weight"] = np.zeros(3, np.float32)
    with pytest.raises(ConversionError) as e:
        convert.arrays_from_torch(sd, ModelConfig.tiny())
    msg = str(e.value)
    assert "missing keys: dilated_layers.dilated_layers.2.3.weight" in msg
    assert "unexpected keys: dilated_layers.dilated_layers.2.5.weight" in msg
    assert "\n" not in msg


def test_misshaped_keys_are_named():
    sd = _tiny_sd()
    sd["conv_layers.conv_layers.1.0.weight"] = np.zeros((21, 18, 3), np.float32)
    with pytest.raises(ConversionError, match=r"conv_layers\.conv_layers\.1\.0\.weight has shape "
                                              r"\(21, 18, 3\), expected \(21, 18, 5\)"):
        convert.arrays_from_torch(sd, ModelConfig.tiny())


def test_checkpoint_of_another_architecture_is_rejected(tmp_path, capsys):
    """A tiny .pt converted as full Basenji2: one line naming the mismatched keys."""
    pt = tmp_path / "tiny.pt"
    torch.save(TorchBasenji2(ModelConfig.tiny()).state_dict(), pt)
    rc = convert.main(["torch-to-jax", "--variant", "basenji2-prime", "--input", str(pt),
                       "--output", str(tmp_path / "ckpt")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    # tiny has 4 residual blocks where Basenji2 has 11: the widths that fit are named, then the missing keys
    assert err.startswith(f"error: {pt} has the layers of --widths tiny: pass it (state_dict does not match "
                          "basenji2-prime: missing keys: dilated_layers.dilated_layers.10.0.bias")
    assert not (tmp_path / "ckpt").exists()


def test_not_a_state_dict_is_rejected(tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    rc = convert.main(["torch-to-jax", "--variant", "basenji2-prime", "--input", str(junk),
                       "--output", str(tmp_path / "ckpt")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "junk.pt is not a readable torch checkpoint" in err


# ----- a broken conversion cannot pass --------------------------------------------------

def _eval_rel_err(cfg, tmodel):
    jmodel = model_from_torch(tmodel.state_dict(), cfg)
    x = one_hot(2, cfg.seq_length, seed=9)
    with torch.no_grad():
        want = tmodel(torch.from_numpy(x), "human").numpy()
    return rel_err(Predictor(jmodel, "human")(x), want)


def test_parity_check_passes_with_the_real_conversion():
    cfg = ModelConfig.tiny()
    assert _eval_rel_err(cfg, calibrated_torch_model(cfg, seed=10)) <= REL_TOL


@pytest.mark.parametrize("kind,position,broken", [
    # conv kernel taps reversed (convolution vs cross-correlation): shapes still fit
    ("conv", 0, lambda w: np.ascontiguousarray(w.transpose(2, 1, 0)[::-1])),
    # running variance stored as a standard deviation
    ("bn", 3, lambda v: np.sqrt(v)),
    # the Linear transpose forgotten on a square head (tracks == channels)
    ("linear", 0, lambda w: np.ascontiguousarray(w)),
])
def test_a_broken_conversion_fails_the_parity_check(monkeypatch, kind, position, broken):
    cfg = ModelConfig.tiny(heads={"human": 48})  # 48 tracks == final channels: square head
    tmodel = calibrated_torch_model(cfg, seed=10)
    rows = list(convert_table.TORCH_KINDS[kind])
    suffix, leaf, _, to_torch = rows[position]
    rows[position] = (suffix, leaf, broken, to_torch)
    monkeypatch.setitem(convert_table.TORCH_KINDS, kind, rows)
    assert _eval_rel_err(cfg, tmodel) > 10 * REL_TOL


def test_variant_is_required(tmp_path, capsys):
    """Both variants have the same weights: the user must say which one a .pt is."""
    pt = tmp_path / "a.pt"
    torch.save(TorchBasenji2(ModelConfig.tiny()).state_dict(), pt)
    assert convert.main(["torch-to-jax", "--input", str(pt), "--output", str(tmp_path / "c")]) == 2
    assert "--variant is required" in capsys.readouterr().err
