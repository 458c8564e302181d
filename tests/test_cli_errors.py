"""Every command: a wrong path is one line on stderr and exit code 2; a bug keeps its traceback."""

import pytest

from jax_basenji import bench, convert, finetune, predict
from jax_basenji import train as train_cli
from jax_basenji.cli import one_line_errors
from jax_basenji.data.__main__ import main as data_main
from jax_basenji.evaluate.__main__ import main as evaluate_main

MISSING = "/nonexistent/jax-basenji-input"


@pytest.mark.parametrize("main, argv", [
    (train_cli.main, ["--data", MISSING, "--workdir", "{tmp}/w", "--steps", "1"]),
    (finetune.main, ["--pretrained", "{tmp}", "--data", MISSING, "--workdir", "{tmp}/w"]),
    (evaluate_main, ["positions", "--checkpoint", "{tmp}", "--head", "human", "--data", MISSING,
                     "--output", "{tmp}/e"]),
    (evaluate_main, ["attribution", "--checkpoint", MISSING, "--head", "human", "--fasta", MISSING,
                     "--region", "chr1:1-2", "--output", "{tmp}/a"]),
    (predict.main, ["--checkpoint", "{tmp}", "--head", "human", "--input", MISSING, "--output", "{tmp}/y"]),
    (convert.main, ["torch-to-jax", "--variant", "basenji2-prime", "--input", MISSING, "--output", "{tmp}/c"]),
    (convert.main, ["keras-to-jax", "--input", MISSING + ".h5", "--output", "{tmp}/c"]),
    (convert.main, ["jax-to-torch", "--input", MISSING, "--output", "{tmp}/m.pt"]),
    (data_main, ["convert", "--input", MISSING, "--output", "{tmp}/s"]),
    (bench.main, ["data", "--store", MISSING]),
], ids=["train", "finetune", "evaluate-positions", "evaluate-attribution",
        "predict", "convert-torch", "convert-keras", "convert-back", "data-convert", "bench-data"])
def test_a_wrong_path_is_one_line_and_exit_2(main, argv, tmp_path, capsys):
    rc = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "jax-basenji-input" in err, err


def test_programming_errors_keep_their_traceback():
    @one_line_errors
    def buggy():
        return {}["missing"]

    with pytest.raises(KeyError):
        buggy()

    @one_line_errors
    def also_buggy():
        raise ValueError("a bug, not bad input")

    with pytest.raises(ValueError):
        also_buggy()


@pytest.mark.parametrize("flag", [["--steps", "0"], ["--epochs", "0"], ["--batch-size", "0"]])
def test_zero_training_length_is_refused_not_replaced(flag, tmp_path, capsys):
    """--steps 0 used to become the default 1000 rounds silently."""
    from jax_basenji.data.synth import SynthConfig, synth
    from jax_basenji.data.store import convert as convert_store

    synth(str(tmp_path / "b"), {"human": 2}, SynthConfig(seq_length=2048, crop_bp=128, examples=(
        ("train", 2), ("valid", 1), ("test", 1))), progress=False)
    convert_store(str(tmp_path / "b"), str(tmp_path / "s"), progress=False)
    rc = train_cli.main(["--data", str(tmp_path / "s"), "--species", "human", "--workdir", str(tmp_path / "w"),
                         *flag])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and f"{flag[0]} must be positive, got 0" in err


def test_the_demo_says_what_it_removes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "demo_train").mkdir(parents=True)
    from jax_basenji.train import cli as train_cli_module

    monkeypatch.setattr(train_cli_module, "demo_data", lambda: "store")
    summary = {s: {"pearson_r": 0.9, "pearson_r_by_assay": {}} for s in ("human", "mouse")}
    monkeypatch.setattr(train_cli_module, "train", lambda *a, **k: {
        **summary, "plots": [], "model": "m", "model_best": "mb", "selection": {"round": 1}})
    assert train_cli.main([]) == 0
    assert f"removing the previous demo run {tmp_path / 'runs' / 'demo_train'}" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "demo_train").exists()


@pytest.mark.parametrize("main, argv, shown", [
    (evaluate_main, ["tss", "--help"], ["stores (default: human)", "(default: name)", "(default: test)"]),
    (finetune.main, ["--help"], ["each store (default: the stores' only one)", "(default: heads)", "default sgd"]),
    (data_main, ["tracks", "--help"], ["the genome the regions come from", "(default 1)"]),
], ids=["evaluate-tss", "finetune", "data-tracks"])
def test_help_shows_every_default(main, argv, shown, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    options = " ".join(capsys.readouterr().out.split()).split("options:")[-1]
    for text in shown:
        assert text in options


def test_warnings_are_one_clean_line(capsys):
    import warnings

    @one_line_errors
    def warns():
        warnings.warn("track x.bw: no chromosome 'chr1'; those bins are zeros")

    assert warns() == 0
    assert capsys.readouterr().err == "warning: track x.bw: no chromosome 'chr1'; those bins are zeros\n"


def test_finetune_modality_names_are_case_insensitive():
    from jax_basenji.cli import InputError

    stores = [("atac", 2), ("rna", 3)]
    assert finetune.modalities(stores, {"RNA": 2.0}, ["Rna"]) == (("atac", 2, 1.0, False), ("rna", 3, 2.0, True))
    with pytest.raises(InputError, match=r"name \['rnaseq'\]; the --data modalities are \['atac', 'rna'\]"):
        finetune.modalities(stores, {}, ["RNAseq"])


def test_a_tiny_pt_read_at_real_widths_names_the_widths_that_fit(tmp_path, capsys):
    import torch

    from jax_basenji.config import ModelConfig
    from torch_ref import Basenji2

    torch.save(Basenji2(ModelConfig.tiny()).state_dict(), tmp_path / "tiny.pt")
    argv = ["torch-to-jax", "--variant", "basenji2-double-prime", "--input", str(tmp_path / "tiny.pt"),
            "--output", str(tmp_path / "ckpt")]
    assert convert.main(argv) == 2
    assert "tiny.pt has the layers of --widths tiny: pass it" in capsys.readouterr().err
    assert convert.main([*argv, "--widths", "tiny"]) == 0


def test_the_demo_passes_only_a_model_that_learnt_every_assay():
    from jax_basenji.train.cli import demo_failures

    def summary(human, by_assay):
        return {s: {"pearson_r": human if s == "human" else 0.9, "pearson_r_by_assay": dict(by_assay)}
                for s in ("human", "mouse")}

    learnt = {"ATAC": 0.8, "CAGE": 0.75, "CHIP_TF": 0.56}
    assert demo_failures(summary(0.71, learnt), ("human", "mouse")) == []
    assert demo_failures(summary(0.6, learnt), ("human", "mouse")) == ["human validation Pearson R 0.600 < 0.65"]
    one_assay = {**learnt, "CAGE": 0.37}
    assert demo_failures(summary(0.7, one_assay), ("human", "mouse")) == [
        "human CAGE validation Pearson R 0.370 < 0.5", "mouse CAGE validation Pearson R 0.370 < 0.5"]
    assert len(demo_failures(summary(float("nan"), {"CAGE": float("nan")}), ("human",))) == 1 + 1
