"""Writes tests/fixtures/basenji_sad with upstream calico/basenji's own basenji_sad.py (run once).

  python3 -m venv /tmp/tfenv
  /tmp/tfenv/bin/pip install "tensorflow-cpu==2.15.*" h5py numpy pandas pysam scipy tqdm natsort
  mkdir /tmp/basenji && git --git-dir=<calico/basenji mirror> archive HEAD basenji bin | tar -x -C /tmp/basenji
      (naming basenji/ and bin/: the local mirror lacks a testdata/ blob, so a whole-tree archive fails)
  /tmp/tfenv/bin/python scripts/make_sad_fixtures.py /tmp/basenji [--check-with python3]

TensorFlow and basenji are not dependencies of the project: this script only
makes the small committed files that let `variants score` be tested against
upstream itself. The basenji checkout is used as it is (its package on
sys.path, its bin/basenji_sad.py run unchanged); nothing of it is copied here.
Shims: none are needed with TF 2.15 (basenji's `tensorflow.python.keras`
imports still resolve); basenji_sad.py reads $BASENJIDIR when it defines its
`-f` default, so BASENJIDIR is set to the checkout if unset. `natsort` is
needed by basenji.seqnn.

What is written (all seeded):

  params.json      upstream's params at the `tiny-basenji2` widths, in the block
                   list of manuscripts/cross2020/params_human.json (conv_block stem,
                   conv_tower, dilated_residual, Cropping1D, conv_block, final);
                   target_length is the uncropped 128 bins, as params_human.json's
                   1024 is for 131,072 bp (basenji_sad.py does not read it)
  model.h5         basenji.seqnn.SeqNN(params).save(): random he_normal weights with
                   BatchNorm gammas/betas and the Dense bias drawn away from 1/0
                   (so the residual branches, whose last gamma starts at 0, are
                   alive) and moving statistics from training-mode calls
  genome.fa(.fai)  chr1 40,000 bp (N gap 24,751-25,250, lowercase 9,601-10,400),
                   chr2 20,000 bp
  variants.vcf     23 records exercising snp_seq1's window rules (VCF_PLAN, then
                   RIGHT_END_PLAN: indels whose window runs past a chromosome's end,
                   where snp_seq1 pads the read only to seq_end - seq_start, one base
                   short of L + extra), written sorted by chromosome and position
  sad_plain.h5     basenji_sad.py -f genome.fa -o OUT --stats SAD,D2 params.json model.h5 variants.vcf
  sad_rc_shifts.h5 the same with --rc --shifts 1,0,-1
  upstream_plain.npz, upstream_rc_shifts.npz
                   captured in the same runs by wrapping bvcf.snp_seq1 and
                   write_snp_len/write_snp (the computation stays upstream's):
                   ref_windows [snps, 16384] uint8 and alt_windows [snps, 2, 16384]
                   uint8 (0..3 = ACGT, 4 = a 0.25 row, 255 = no such ALT), n_alts,
                   ref_preds/alt_preds [snps, 112, 8] float32 (what write_snp_len got:
                   the first ALT only), sad32 and d2_32 [snps, 8] float32 (before the
                   float16 cast), snp_ids, write_snp_calls (0: sum_length is never
                   true), tf_version, basenji_commit; upstream_plain.npz also holds
                   x_check [3, 16384, 4] float32 (three REF windows as fed) and
                   y_check [3, 112, 8], a freshly restored SeqNN's raw output on them.

With --check-with PYTHON (the project's interpreter), the model is converted with
`jax_basenji.convert keras-to-jax --widths tiny --gelu tanh` (upstream's
layers.activate('gelu') is tf.keras.activations.gelu(approximate=True)) and
`jax_basenji.predict` is compared with y_check.
"""

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # plain kernels: reproducible float32 outputs

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "basenji_sad")
BASENJI_COMMIT = "74b867105a235a3e0eb663022cee2fbf430deaf0"
SEQ_LEN, TRACKS, CROP = 16384, 8, 8

PARAMS = {
    # As params_human.json; batch_size > 1 makes basenji_sad.py predict REF and ALTs in one call.
    "train": {"batch_size": 4, "optimizer": "sgd", "learning_rate": 0.15, "momentum": 0.99,
              "patience": 16, "clip_norm": 2},
    "model": {
        "seq_length": SEQ_LEN,
        "target_length": SEQ_LEN // 128,
        "activation": "gelu",
        "norm_type": "batch",
        "bn_momentum": 0.9,
        "trunk": [
            {"name": "conv_block", "filters": 16, "kernel_size": 15, "pool_size": 2},
            {"name": "conv_tower", "filters_init": 18, "filters_mult": 1.1776, "kernel_size": 5,
             "pool_size": 2, "repeat": 6},
            {"name": "dilated_residual", "filters": 16, "rate_mult": 1.5, "repeat": 4, "dropout": 0.3,
             "round": True},
            {"name": "Cropping1D", "cropping": CROP},
            {"name": "conv_block", "filters": 48, "dropout": 0.05},
        ],
        "head_human": {"name": "final", "units": TRACKS, "activation": "softplus"},
    },
}

CHR_LEN = {"chr1": 40_000, "chr2": 20_000}
N_GAP = ("chr1", 24_750, 25_250)  # 0-based half-open
LOWER = ("chr1", 9_600, 10_400)
COMP = {"A": "C", "C": "G", "G": "T", "T": "A"}  # a base that is not the genome's

# (chrom, pos, id, kind): alleles are drawn from the genome by make_vcf.
VCF_PLAN = [
    ("chr1", 1, "snv_chr1_pos1", "snv"),             # window starts 8,190 bp before the chromosome
    ("chr1", 1_500, "snv_near_start", "snv"),        # POS < 8192: 'N' * (1 - seq_start) prefix
    ("chr1", 6_000, ".", "snv"),                     # ID '.': upstream names it chr1:6000
    ("chr1", 10_000, "snv_lowercase", "snv"),        # soft-masked genome around the variant
    ("chr1", 11_000, "snv_flipped", "flip"),         # VCF REF != genome, VCF ALT == genome
    ("chr1", 12_000, "snv_multi", "multi_snv"),      # two ALTs, both SNVs
    ("chr1", 13_000, "multi_mixed", "multi_mixed"),  # REF=4 bp, ALT=1 bp deletion, ALT=REF+2 bp
    ("chr1", 14_000, "ins1", "ins1"),
    ("chr1", 15_000, "ins3", "ins3"),
    ("chr1", 16_000, "ins4", "ins4"),
    ("chr1", 17_000, "del1", "del1"),
    ("chr1", 18_000, "del3", "del3"),
    ("chr1", 19_000, "del4", "del4"),
    ("chr1", 24_600, "snv_before_gap", "snv"),       # 150 bp before the N gap
    ("chr1", 25_400, "del3_after_gap", "del3"),      # 150 bp after it
    ("chr1", 39_000, "snv_near_chr1_end", "snv"),
    ("chr2", 10_000, "snv_chr2_mid", "snv"),
    ("chr2", 19_950, "snv_near_chr2_end", "snv"),    # window runs 8,142 bp past the end: 'N' suffix
]
# Indels whose window runs past the chromosome's right end (POS > length - 8,192): snp_seq1 pads
# the read to seq_end - seq_start only, one base short of L + max(0, len(REF) - longest ALT), so
# the REF/ALT lengths that dna_length_1hot trims or pads (and their parity) differ from mid-genome.
# Alleles are drawn after VCF_PLAN's (its records keep theirs); make_vcf writes all sorted.
RIGHT_END_PLAN = [
    ("chr1", 39_500, "del2_near_chr1_end", "del2"),  # read 7,694 bp past the end
    ("chr2", 18_500, "ins2_near_chr2_end", "ins2"),  # 6,692 bp
    ("chr2", 19_000, "del2_near_chr2_end", "del2"),  # 7,194 bp (seq_end includes the 2 deleted bases)
    ("chr2", 19_400, "del3_near_chr2_end", "del3"),  # 7,595 bp
    ("chr2", 19_800, "ins4_near_chr2_end", "ins4"),  # 7,992 bp
]
X_CHECK_IDS = ["snv_lowercase", "snv_near_start", "snv_before_gap"]  # no N; N prefix; the N gap


# ----- genome and VCF ---------------------------------------------------------------
def make_genome(rng, path):
    seqs = {}
    for chrom, length in CHR_LEN.items():
        seqs[chrom] = np.array(list("ACGT"))[rng.integers(0, 4, length)]
    chrom, a, b = N_GAP
    seqs[chrom][a:b] = "N"
    chrom, a, b = LOWER
    seqs[chrom][a:b] = np.char.lower(seqs[chrom][a:b])
    with open(path, "w") as f:
        for chrom, s in seqs.items():
            f.write(f">{chrom}\n")
            text = "".join(s)
            for i in range(0, len(text), 60):
                f.write(text[i:i + 60] + "\n")
    import pysam
    pysam.faidx(path)
    return {c: "".join(s).upper() for c, s in seqs.items()}


def make_vcf(rng, genome, path):
    def other(base, avoid=()):
        return next(b for b in rng.permutation(list("ACGT")) if b != base and b not in avoid)

    def bases(n):
        return "".join(rng.choice(list("ACGT"), n))

    lines = []
    for chrom, pos, rid, kind in VCF_PLAN + RIGHT_END_PLAN:  # draw order
        g = genome[chrom][pos - 1:pos + 4]  # REF bases from POS
        assert "N" not in g, (chrom, pos)
        if kind == "snv":
            ref, alt = g[0], other(g[0])
        elif kind == "flip":
            ref, alt = COMP[g[0]], g[0]
        elif kind == "multi_snv":
            a1 = other(g[0])
            ref, alt = g[0], f"{a1},{other(g[0], (a1,))}"
        elif kind == "multi_mixed":
            ref, alt = g[:4], f"{g[0]},{g[:4]}{bases(2)}"
        elif kind.startswith("ins"):
            ref = g[0]
            alt = ref + bases(int(kind[3:]))
        elif kind.startswith("del"):
            n = int(kind[3:])
            ref, alt = g[:n + 1], g[0]
        lines.append((list(CHR_LEN).index(chrom), pos, f"{chrom}\t{pos}\t{rid}\t{ref}\t{alt}\t.\tPASS\t."))
    lines = [line for _, _, line in sorted(lines)]
    header = ["##fileformat=VCFv4.2"] + [f"##contig=<ID={c},length={n}>" for c, n in CHR_LEN.items()]
    header.append("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO")
    with open(path, "w") as f:
        f.write("\n".join(header + lines) + "\n")


# ----- model ----------------------------------------------------------------------
def random_one_hot(rng, batch):
    return np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=(batch, SEQ_LEN))]


def make_model(checkout, out):
    import tensorflow as tf
    sys.path.insert(0, checkout)
    from basenji import seqnn

    tf.get_logger().setLevel("ERROR")
    tf.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model_obj = seqnn.SeqNN(PARAMS["model"])
    model = model_obj.model
    # As make_keras_fixtures.perturb_and_calibrate: gammas/betas and the Dense bias off
    # their defaults (the residual branches' zero gammas would make them no-ops), then
    # moving statistics by Keras' own training-mode update.
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([1 + 0.2 * rng.standard_normal(gamma.shape).astype(np.float32),
                               0.1 * rng.standard_normal(beta.shape).astype(np.float32), mean, var])
        elif isinstance(layer, tf.keras.layers.Dense):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, 0.1 * rng.standard_normal(bias.shape).astype(np.float32)])
    for _ in range(40):
        model(random_one_hot(rng, 2), training=True)
    path = os.path.join(out, "model.h5")
    model_obj.save(path)  # what basenji_sad.py's SeqNN.restore reads

    x = random_one_hot(rng, 2)
    y = model(x, training=False).numpy()
    again = seqnn.SeqNN({**PARAMS["model"], "verbose": False})
    again.restore(path)
    assert np.array_equal(again.model(x, training=False).numpy(), y)
    assert y.shape == (2, SEQ_LEN // 128 - 2 * CROP, TRACKS), y.shape
    print("model", path, "output std over bins", float(y.std(axis=1).mean()), "over tracks",
          float(y.std(axis=2).mean()))


# ----- capture run (a subprocess per basenji_sad.py run) -----------------------------
def codes(window):
    """[L, 4] float16 one-hot (0.25 rows for N) -> [L] uint8 codes 0..3, 4 = N."""
    w = np.asarray(window, np.float32)
    onehot = np.isin(w, (0.0, 1.0)).all(axis=1) & (w.sum(axis=1) == 1)
    uniform = (w == 0.25).all(axis=1)
    assert (onehot | uniform).all(), "a row is neither one-hot nor all 0.25"
    return np.where(uniform, 4, w.argmax(axis=1)).astype(np.uint8)


def capture(checkout, out, work, name, extra, commit):
    os.environ.setdefault("BASENJIDIR", checkout)  # basenji_sad.py's -f default reads it
    sys.path.insert(0, checkout)
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")
    spec = importlib.util.spec_from_file_location("basenji_sad", os.path.join(checkout, "bin", "basenji_sad.py"))
    sad = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sad)

    windows, got, write_snp_calls, snps_seen = [], {}, [], []
    orig_seq1, orig_len, orig_snp = sad.bvcf.snp_seq1, sad.write_snp_len, sad.write_snp

    def snp_seq1(snp, seq_len, genome_open):
        vecs = orig_seq1(snp, seq_len, genome_open)
        assert len(vecs) == 1 + len(snp.alt_alleles), snp  # REF found (no crash case in the VCF)
        windows.append([codes(v) for v in vecs])
        snps_seen.append(snp.rsid)
        return vecs

    def write_snp_len(ref_preds, alt_preds, sad_out, si, sad_stats):
        # upstream's own float32 expressions, before its float16 cast
        diff = alt_preds - ref_preds
        got[si] = (ref_preds.copy(), alt_preds.copy(), alt_preds.sum(axis=0) - ref_preds.sum(axis=0),
                   np.sqrt(np.power(diff, 2).sum(axis=0)))
        return orig_len(ref_preds, alt_preds, sad_out, si, sad_stats)

    def write_snp(ref_preds_sum, alt_preds_sum, sad_out, si, sad_stats):
        write_snp_calls.append(si)
        return orig_snp(ref_preds_sum, alt_preds_sum, sad_out, si, sad_stats)

    sad.bvcf.snp_seq1, sad.write_snp_len, sad.write_snp = snp_seq1, write_snp_len, write_snp
    run_dir = os.path.join(work, f"OUT_{name}")
    shutil.rmtree(run_dir, ignore_errors=True)
    sys.argv = ["basenji_sad.py", "-f", os.path.join(out, "genome.fa"), "-o", run_dir, "--stats", "SAD,D2",
                *extra, os.path.join(out, "params.json"), os.path.join(out, "model.h5"),
                os.path.join(out, "variants.vcf")]
    print("running", " ".join(sys.argv[1:]), flush=True)
    sad.main()
    shutil.copyfile(os.path.join(run_dir, "sad.h5"), os.path.join(out, f"sad_{name}.h5"))

    n = len(windows)
    assert sorted(got) == list(range(n)) and not write_snp_calls
    n_alts = np.array([len(w) - 1 for w in windows], np.int32)
    alt_windows = np.full((n, n_alts.max(), SEQ_LEN), 255, np.uint8)
    for i, w in enumerate(windows):
        alt_windows[i, :len(w) - 1] = w[1:]
    arrays = dict(
        ref_windows=np.stack([w[0] for w in windows]), alt_windows=alt_windows, n_alts=n_alts,
        ref_preds=np.stack([got[i][0] for i in range(n)]).astype(np.float32),
        alt_preds=np.stack([got[i][1] for i in range(n)]).astype(np.float32),
        sad32=np.stack([got[i][2] for i in range(n)]).astype(np.float32),
        d2_32=np.stack([got[i][3] for i in range(n)]).astype(np.float32),
        snp_ids=np.array(snps_seen), write_snp_calls=np.array(len(write_snp_calls)),
        argv=np.array([os.path.basename(a) if os.sep in a else a for a in sys.argv[1:]]),  # paths as names
        tf_version=np.array(tf.__version__), basenji_commit=np.array(commit))

    if name == "plain":  # Keras' raw output on three REF windows as fed, by a freshly restored SeqNN
        from basenji import seqnn
        with open(os.path.join(out, "params.json")) as f:
            params_model = json.load(f)["model"]
        model = seqnn.SeqNN({**params_model, "verbose": False})
        model.restore(os.path.join(out, "model.h5"))
        idx = [snps_seen.index(i) for i in X_CHECK_IDS]
        onehot = np.vstack([np.eye(4, dtype=np.float32), np.full((1, 4), 0.25, np.float32)])
        x_check = onehot[arrays["ref_windows"][idx]]
        arrays.update(x_check=x_check, x_check_ids=np.array(X_CHECK_IDS),
                      y_check=model.model(x_check, training=False).numpy())
    np.savez_compressed(os.path.join(out, f"upstream_{name}.npz"), **arrays)


# ----- optional check with the project's interpreter -------------------------------
def check_converter(python, out):
    """Convert model.h5 with the project and compare its predictions on x_check with Keras'."""
    check = f"""
import numpy as np
from jax_basenji.predict.core import load_predictor
npz = np.load({os.path.join(out, 'upstream_plain.npz')!r})
x, keras = npz["x_check"], npz["y_check"]
codes = np.where((x == 0.25).all(-1), 4, x.argmax(-1)).astype(np.uint8)  # N -> 4, coded as 0.25 below
predictor, _ = load_predictor(CKPT, "human", n_value=0.25)
for name, ours in (("predict CLI (N-free window)", np.load(Y)), ("Predictor, n_value 0.25", predictor(codes))):
    ref = keras[:len(ours)]
    d = np.abs(ours - ref)
    print(f"converted vs Keras, {{name}}: max abs {{d.max():.3g}}, max rel {{(d / np.abs(ref)).max():.3g}}")
"""
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, x, y = os.path.join(tmp, "ckpt"), os.path.join(tmp, "x.npy"), os.path.join(tmp, "y.npy")
        x_check = np.load(os.path.join(out, "upstream_plain.npz"))["x_check"]
        assert not (x_check[0] == 0.25).any()
        np.save(x, x_check[:1].astype(np.uint8))  # the CLI takes one-hot only: the N-free window
        subprocess.run([python, "-m", "jax_basenji.convert", "keras-to-jax", "--input",
                        os.path.join(out, "model.h5"), "--output", ckpt, "--widths", "tiny", "--gelu", "tanh"],
                       check=True)
        subprocess.run([python, "-m", "jax_basenji.predict", "--checkpoint", ckpt, "--head", "human",
                        "--input", x, "--output", y, "--no-progress"], check=True)
        subprocess.run([python, "-c", f"CKPT, Y = {ckpt!r}, {y!r}\n" + check], check=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("basenji", help="a calico/basenji checkout (its basenji/ package and bin/basenji_sad.py)")
    p.add_argument("--out", default=OUT, help="fixture folder (default: tests/fixtures/basenji_sad)")
    p.add_argument("--work", default=None, help="scratch folder for basenji_sad.py's output dirs")
    p.add_argument("--basenji-commit", default=BASENJI_COMMIT, help="recorded in the npz files")
    p.add_argument("--check-with", metavar="PYTHON", help="the project's interpreter: convert and compare")
    p.add_argument("--capture", nargs=2, metavar=("NAME", "EXTRA_JSON"), help=argparse.SUPPRESS)
    args = p.parse_args()
    checkout, out = os.path.abspath(args.basenji), os.path.abspath(args.out)
    work = os.path.abspath(args.work or tempfile.mkdtemp(prefix="basenji_sad_"))

    if args.capture:
        capture(checkout, out, work, args.capture[0], json.loads(args.capture[1]), args.basenji_commit)
        return

    os.makedirs(out, exist_ok=True)
    os.makedirs(work, exist_ok=True)
    rng = np.random.default_rng(2020)
    with open(os.path.join(out, "params.json"), "w") as f:
        json.dump(PARAMS, f, indent=2)
        f.write("\n")
    genome = make_genome(rng, os.path.join(out, "genome.fa"))
    make_vcf(rng, genome, os.path.join(out, "variants.vcf"))
    make_model(checkout, out)
    # Each basenji_sad.py run in its own process, as from the command line.
    for name, extra in (("plain", []), ("rc_shifts", ["--rc", "--shifts", "1,0,-1"])):
        subprocess.run([sys.executable, os.path.abspath(__file__), checkout, "--out", out, "--work", work,
                        "--basenji-commit", args.basenji_commit, "--capture", name, json.dumps(extra)],
                       check=True)
    if args.check_with:
        check_converter(args.check_with, out)
    for f in sorted(os.listdir(out)):
        print(f"{os.path.getsize(os.path.join(out, f)):>9}  {f}")


if __name__ == "__main__":
    main()
