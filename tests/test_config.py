"""ModelConfig: presets, derived widths/dilations, lengths, serialization."""

import dataclasses

import pytest

from jax_basenji.config import ModelConfig


def test_basenji2_tower_widths_and_dilations_follow_the_seed():
    cfg = ModelConfig.basenji2_double_prime()
    assert cfg.tower_channels == [339, 399, 470, 553, 651, 768]  # 553/651, not 554/652
    assert cfg.dilations == [2, 2, 3, 5, 8, 11, 17, 26, 38, 58, 86]  # starts at 2, not 1
    assert cfg.bin_size == 128 and cfg.target_length == 896
    assert cfg.head_tracks == {"human": 5313, "mouse": 1643}


def test_presets():
    assert ModelConfig().variant == "basenji2-double-prime"
    assert ModelConfig.basenji2_prime().variant == "basenji2-prime"
    assert ModelConfig.preset("basenji2-prime", bn_momentum=0.99).bn_momentum == 0.99
    tiny = ModelConfig.preset("tiny")
    assert tiny.bin_size == 128 and tiny.seq_length == 16_384 and tiny.target_length == 112
    with pytest.raises(ValueError, match="unknown model preset 'huge'"):
        ModelConfig.preset("huge")


def test_config_is_frozen_and_hashable():
    cfg = ModelConfig.tiny()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.variant = "basenji2-prime"
    assert hash(cfg) == hash(ModelConfig.tiny())


@pytest.mark.parametrize("length,bins", [(131_072, 896), (32_768, 128), (196_608, 1408)])
def test_output_bins(length, bins):
    assert ModelConfig().output_bins(length) == bins


@pytest.mark.parametrize("length,message", [
    (131_000, "not a positive multiple of the 128 bp bin width"),
    (16_384, "leaves no bins after cropping 64 bins per side"),
])
def test_impossible_lengths_are_refused(length, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig().output_bins(length)


def test_bad_fields_are_refused():
    with pytest.raises(ValueError, match="unknown variant"):
        ModelConfig(variant="basenji3")
    with pytest.raises(ValueError, match="unknown dtype"):
        ModelConfig(dtype="float16")
    with pytest.raises(ValueError, match="at least one head"):
        ModelConfig(heads={})
    with pytest.raises(ValueError, match="tower_kernel must be odd, not 4"):  # "same" padding is symmetric
        ModelConfig(tower_kernel=4)


def test_dict_round_trip_and_unknown_fields():
    cfg = ModelConfig.tiny(variant="basenji2-prime", heads={"human": 3, "finetune": 35})
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict()["heads"] == {"human": 3, "finetune": 35}
    with pytest.raises(ValueError, match=r"unknown model config fields: \['width'\]"):
        ModelConfig.from_dict({**cfg.to_dict(), "width": 3})


def test_published_preset_follows_upstream_rules():
    """calico/basenji params_human.json: conv_tower round(339 * 1.1776**i), dilations d = round(1.5 d) from 1."""
    cfg = ModelConfig.basenji2()
    assert cfg.tower_channels == [339, 399, 470, 554, 652, 768]
    assert cfg.dilations == [1, 2, 3, 4, 6, 9, 14, 21, 32, 48, 72]
    assert (cfg.gelu, cfg.conv_bias, cfg.bn_eps, cfg.bn_momentum, cfg.bn_unbiased_var) == \
        ("sigmoid", False, 1e-3, 0.1, False)
    assert cfg.heads == (("human", 5313),) and cfg.target_length == 896 and cfg.pre_activation
    assert not ModelConfig().pre_activation and ModelConfig().gelu == "erf"  # the seed's keep theirs


def test_published_form_fields_are_checked():
    with pytest.raises(ValueError, match="unknown gelu 'relu'"):
        ModelConfig.basenji2(gelu="relu")
    with pytest.raises(ValueError, match="unknown dilation_rule"):
        ModelConfig(dilation_rule="keras")
    with pytest.raises(ValueError, match=r"must end at trunk_channels=768"):
        ModelConfig.basenji2(tower_init=300)
