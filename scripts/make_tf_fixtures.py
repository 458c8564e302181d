"""Writes tests/fixtures/basenji_tf with TensorFlow's own TFRecordWriter (run once).

  python -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu numpy
  /tmp/tf/bin/python scripts/make_tf_fixtures.py

TensorFlow is not a dependency of the project: this script only makes the
small committed fixtures that prove our reader matches TensorFlow's writer.
human: (L,) uint8 index sequences (seq_1hot), 2 train files; mouse: (L, 4)
bool one-hot sequences. expected.npz holds the one-hot sequences and float16
targets every record must decode to.
"""

import json
import os

import numpy as np
import tensorflow as tf

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "basenji_tf")
L, BINS, TRACKS, POOL = 1024, 4, 3, 128
LAYOUT = {"human": {"train": [2, 1], "valid": [1], "test": [1]},
          "mouse": {"train": [2], "valid": [1], "test": [1]}}


def feature(b):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[b]))


def main():
    rng = np.random.default_rng(0)
    expected = {}
    for species, subsets in LAYOUT.items():
        d = os.path.join(OUT, species)
        os.makedirs(os.path.join(d, "tfrecords"), exist_ok=True)
        bed, counts = [], {}
        for subset, files in subsets.items():
            seqs, tgts = [], []
            for n_file, n in enumerate(files):
                opts = tf.io.TFRecordOptions(compression_type="ZLIB")
                with tf.io.TFRecordWriter(os.path.join(d, "tfrecords", f"{subset}-{n_file}.tfr"), opts) as w:
                    for _ in range(n):
                        index = rng.integers(0, 5, size=L).astype(np.uint8)  # 4 = N
                        one_hot = np.concatenate([np.eye(4, dtype=np.uint8), np.zeros((1, 4), np.uint8)])[index]
                        target = rng.gamma(1.0, 2.0, size=(BINS, TRACKS)).astype(np.float16)
                        seq_bytes = index.tobytes() if species == "human" else one_hot.astype(bool).tobytes()
                        ex = tf.train.Example(features=tf.train.Features(feature={
                            "sequence": feature(seq_bytes), "target": feature(target.tobytes())}))
                        w.write(ex.SerializeToString())
                        seqs.append(one_hot)
                        tgts.append(target)
                        bed.append(f"chr{len(bed) + 1}\t1000\t{1000 + L}\t{subset}\n")
            counts[subset] = len(seqs)
            expected[f"{species}/{subset}/sequence"] = np.stack(seqs)
            expected[f"{species}/{subset}/target"] = np.stack(tgts)
        with open(os.path.join(d, "sequences.bed"), "w") as f:
            f.writelines(bed)
        with open(os.path.join(d, "targets.txt"), "w") as f:
            f.write("index\tgenome\tidentifier\tfile\tclip\tscale\tsum_stat\tdescription\n")
            for t in range(TRACKS):
                f.write(f"{t}\t0\tFIX{t}\tfixture.w5\t32\t2\tmean\tDNASE:fixture {t}\n")
        stats = {"num_targets": TRACKS, "seq_length": L, "pool_width": POOL, "crop_bp": (L - BINS * POOL) // 2,
                 "target_length": BINS, **{f"{s}_seqs": c for s, c in counts.items()}}
        if species == "human":
            stats["seq_1hot"] = True
        with open(os.path.join(d, "statistics.json"), "w") as f:
            json.dump(stats, f, indent=2)
    np.savez(os.path.join(OUT, "expected.npz"), **expected)
    print("tensorflow", tf.__version__, "wrote", os.path.abspath(OUT))


if __name__ == "__main__":
    main()
