"""The embedded demo: a seed-style torch checkpoint through jax_basenji and back.

  python -m jax_basenji.demo [--workdir runs/demo] [--variant basenji2-prime]

1. builds the `tiny` torch_ref model, calibrates its BatchNorm statistics on
   random DNA and saves it as the multi-GPU seed script would (`module.` keys);
2. converts it to a JAX checkpoint (`jax_basenji.convert torch-to-jax`);
3. predicts with JAX (`jax_basenji.predict`) and compares with torch's eval output;
4. converts back (`jax-to-torch`) and checks that every tensor is bit-identical.
Exits non-zero if parity or the round trip fails.
"""

from __future__ import annotations

import os
import sys
import time

import jax
import numpy as np
import torch

from jax_basenji import convert, predict
from jax_basenji.cli import Parser
from jax_basenji.config import ModelConfig
from torch_ref import Basenji2 as TorchBasenji2


def random_one_hot(n: int, length: int, seed: int) -> np.ndarray:
    """`[n, length, 4]` uint8 one-hot of uniform random DNA."""
    idx = np.random.default_rng(seed).integers(0, 4, size=(n, length))
    return np.eye(4, dtype=np.uint8)[idx]


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m jax_basenji.demo", description=__doc__)
    p.add_argument("--workdir", default="runs/demo")
    p.add_argument("--variant", default="basenji2-double-prime",
                   choices=["basenji2-double-prime", "basenji2-prime"])
    args = p.parse_args(argv)
    jax.config.update("jax_default_matmul_precision", "highest")
    os.makedirs(args.workdir, exist_ok=True)
    cfg = ModelConfig.tiny(variant=args.variant)
    pt, ckpt, back = (os.path.join(args.workdir, n) for n in ("seed.pt", "jax_ckpt", "roundtrip.pt"))
    seqs_path, preds_path = (os.path.join(args.workdir, n) for n in ("seqs.npy", "preds.npy"))

    t0 = time.time()
    torch.manual_seed(0)
    tmodel = TorchBasenji2(cfg)
    seqs = random_one_hot(6, cfg.seq_length, seed=1)
    tmodel.train()
    with torch.no_grad():  # realistic running statistics instead of the 0/1 defaults
        tmodel(torch.from_numpy(random_one_hot(4, cfg.seq_length, seed=2)))
    tmodel.eval()
    torch.save({"module." + k: v for k, v in tmodel.state_dict().items()}, pt)
    print(f"[1/4] torch_ref {cfg.variant} (tiny, {sum(p.numel() for p in tmodel.parameters()):,} "
          f"parameters) saved with 'module.' keys -> {pt}")

    rc = convert.main(["torch-to-jax", "--variant", cfg.variant, "--config", _write_config(cfg, args.workdir),
                       "--input", pt, "--output", ckpt, "--overwrite"])
    if rc:
        return rc
    print(f"[2/4] converted to JAX checkpoint {ckpt}")

    np.save(seqs_path, seqs)
    rc = predict.main(["--checkpoint", ckpt, "--head", "human", "--input", seqs_path,
                       "--output", preds_path, "--batch-size", "4", "--overwrite", "--no-progress"])
    if rc:
        return rc
    with torch.no_grad():
        ref = tmodel(torch.from_numpy(seqs), "human").numpy()
    jax_preds = np.load(preds_path)
    rel = float(np.abs(jax_preds - ref).max() / np.abs(ref).max())
    print(f"[3/4] JAX vs torch eval output {jax_preds.shape}: max |diff| / max |y| = {rel:.2e} "
          f"(tolerance 1e-4)")

    rc = convert.main(["jax-to-torch", "--input", ckpt, "--output", back, "--overwrite"])
    if rc:
        return rc
    original, roundtrip = tmodel.state_dict(), torch.load(back, weights_only=True)
    identical = list(original) == list(roundtrip) and all(
        original[k].dtype == roundtrip[k].dtype and torch.equal(original[k], roundtrip[k]) for k in original)
    print(f"[4/4] torch -> JAX -> torch: {len(roundtrip)} tensors, bit-identical: {identical}")
    ok = rel <= 1e-4 and identical
    print(f"demo {'passed' if ok else 'FAILED'} in {time.time() - t0:.1f}s; files in {args.workdir}")
    return 0 if ok else 1


def _write_config(cfg: ModelConfig, workdir: str) -> str:
    path = os.path.join(workdir, "model_config.json")
    with open(path, "w") as f:
        f.write(cfg.to_json())
    return path


if __name__ == "__main__":
    sys.exit(main())
