"""Writes tests/fixtures/keras with TensorFlow's own Keras (run once).

  python -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install "tensorflow-cpu==2.15.*" h5py numpy
  /tmp/tfenv/bin/python scripts/make_keras_fixtures.py

TensorFlow is not a dependency of the project: this script only makes the
small committed files that prove our HDF5 reader matches Keras' writer. The
model is the Basenji2 layer stack of calico/basenji (blocks.py: GELU -> Conv1D
-> BatchNorm -> Dropout -> MaxPool, a dilated residual tower, crop, final
conv block, softplus head) at reduced widths, so its HDF5 layout (layer and
weight names, shapes, attributes) is the one of the published Basenji2 files.

  basenji2_small_model.h5    model.save(..., save_format="h5"): weights under
                             model_weights/, plus model_config
  basenji2_small_weights.h5  save_weights of a second build of the same stack,
                             so every layer name carries a shifted suffix
                             (conv1d_30, batch_normalization_30, dense_1)
  basenji2_small_io.npz      input one-hot x (uint8, ~2% N), Keras inference
                             output y, one training-mode BatchNormalization
                             step (bn_*), the GELU curve (gelu_*), tf_version,
                             and tiny_x / tiny_y for the file below
  basenji2_tiny_model.h5     the same stack at the `tiny-basenji2` preset's
                             widths (16,384 bp, 4 residual blocks, crop 8 bins,
                             8 tracks), small enough for fine-tuning tests
"""

import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # plain kernels: reproducible float32 outputs

import numpy as np
import tensorflow as tf

# HDF5 is the point here (the published Basenji2 files use it): silence the notices
# that it is legacy and that the uncompiled model has no metrics to build.
warnings.filterwarnings("ignore", message="You are saving your model as an HDF5 file")
tf.get_logger().setLevel("ERROR")

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "keras")
SEQ_LEN, TRACKS = 20480, 10


class GELU(tf.keras.layers.Layer):
    """Basenji's GELU: the sigmoid approximation of the published models."""

    def call(self, x):
        return tf.keras.activations.sigmoid(1.702 * x) * x


tf.keras.utils.get_custom_objects()["GELU"] = GELU


def conv_block(x, filters, kernel_size, pool_size=1, dilation_rate=1, dropout=0.0, bn_gamma="ones"):
    # Order and arguments follow basenji.layers.conv_block as used by Basenji2.
    x = GELU()(x)
    x = tf.keras.layers.Conv1D(filters, kernel_size, padding="same", use_bias=False,
                               dilation_rate=dilation_rate, kernel_initializer="he_normal")(x)
    x = tf.keras.layers.BatchNormalization(momentum=0.9, gamma_initializer=bn_gamma)(x)
    if dropout > 0:
        x = tf.keras.layers.Dropout(dropout)(x)
    if pool_size > 1:
        x = tf.keras.layers.MaxPool1D(pool_size=pool_size, padding="same")(x)
    return x


# The `tiny-basenji2` preset: (seq_len, tracks, residual filters, residual blocks, crop bins).
TINY = (16384, 8, 16, 4, 8)


def build(seq_len=SEQ_LEN, tracks=TRACKS, res_filters=12, res_blocks=11, crop=64):
    """30 Conv1D + 30 BatchNormalization + 1 Dense: [B, 20480, 4] -> [B, 32, 10] (by default)."""
    sequence = tf.keras.Input(shape=(seq_len, 4), name="sequence")
    x = conv_block(sequence, 16, 15, pool_size=2)  # stem: GELU on the one-hot itself
    for i in range(6):  # conv tower, filters grow by 1.1776 per block
        x = conv_block(x, int(np.round(18 * 1.1776 ** i)), 5, pool_size=2)
    d = 1.0
    for _ in range(res_blocks):  # dilated residual tower: dilations 1, 2, 3, 4, 6, ..., 72
        y = conv_block(x, res_filters, 3, dilation_rate=int(np.round(d)))
        y = conv_block(y, 41, 1, dropout=0.3, bn_gamma="zeros")
        x = tf.keras.layers.Add()([x, y])
        d = np.round(d * 1.5)
    x = tf.keras.layers.Cropping1D(crop)(x)
    x = conv_block(x, 48, 1, dropout=0.05)
    x = GELU()(x)
    out = tf.keras.layers.Dense(tracks, activation="softplus")(x)
    return tf.keras.Model(sequence, out)


def random_one_hot(rng, batch, n_frac=0.0, seq_len=SEQ_LEN):
    one_hot = np.eye(4, dtype=np.uint8)[rng.integers(0, 4, size=(batch, seq_len))]
    one_hot[rng.random((batch, seq_len)) < n_frac] = 0  # N positions: all-zero rows
    return one_hot


def perturb_and_calibrate(model, rng, seq_len=SEQ_LEN):
    # Initial gammas of 1 (or 0) and betas of 0 would hide a swapped gamma/beta or
    # a skipped residual branch: draw them, and a Dense bias, away from defaults.
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([1 + 0.2 * rng.standard_normal(gamma.shape).astype(np.float32),
                               0.1 * rng.standard_normal(beta.shape).astype(np.float32), mean, var])
        elif isinstance(layer, tf.keras.layers.Dense):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, 0.1 * rng.standard_normal(bias.shape).astype(np.float32)])
    # Moving statistics by Keras' own update (momentum 0.9), so they are realistic
    # rather than the 0/1 defaults.
    for _ in range(40):
        model(random_one_hot(rng, 2, seq_len=seq_len).astype(np.float32), training=True)


def batchnorm_step(rng):
    # One training-mode call of a fresh layer: shows the output formula and which
    # batch variance (biased or unbiased) goes into moving_variance.
    bn_x = (0.5 + 2.0 * rng.standard_normal((4, 50, 3))).astype(np.float32)
    layer = tf.keras.layers.BatchNormalization(momentum=0.9)
    bn_y = layer(bn_x, training=True).numpy()
    return {"bn_x": bn_x, "bn_y": bn_y,
            "bn_moving_mean": layer.moving_mean.numpy(), "bn_moving_variance": layer.moving_variance.numpy()}


def main():
    tf.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    os.makedirs(OUT, exist_ok=True)

    model = build()
    perturb_and_calibrate(model, rng)
    model.save(os.path.join(OUT, "basenji2_small_model.h5"), save_format="h5")

    # Built second in the same session, Keras numbers these layers after the first
    # model's: a reader must match weights by order, not by layer name.
    model2 = build()
    model2.set_weights(model.get_weights())
    model2.save_weights(os.path.join(OUT, "basenji2_small_weights.h5"))

    x = random_one_hot(rng, 2, n_frac=0.02)
    y = model(x.astype(np.float32), training=False).numpy()
    reloaded = tf.keras.models.load_model(os.path.join(OUT, "basenji2_small_model.h5"), compile=False)
    assert np.array_equal(reloaded(x.astype(np.float32), training=False).numpy(), y)
    assert np.array_equal(model2(x.astype(np.float32), training=False).numpy(), y)

    gelu_x = np.linspace(-6, 6, 101).astype(np.float32)
    bn = batchnorm_step(rng)

    tiny = build(*TINY)  # built last, so the files above are unchanged by it
    perturb_and_calibrate(tiny, rng, seq_len=TINY[0])
    tiny.save(os.path.join(OUT, "basenji2_tiny_model.h5"), save_format="h5")
    tiny_x = random_one_hot(rng, 2, n_frac=0.02, seq_len=TINY[0])
    tiny_y = tiny(tiny_x.astype(np.float32), training=False).numpy()

    np.savez_compressed(os.path.join(OUT, "basenji2_small_io.npz"), x=x, y=y, **bn,
                        gelu_x=gelu_x, gelu_y=GELU()(gelu_x).numpy(), tf_version=np.array(tf.__version__),
                        tiny_x=tiny_x, tiny_y=tiny_y)
    print("tensorflow", tf.__version__, "wrote", os.path.abspath(OUT))
    print(f"y {y.shape} min {y.min():.4g} max {y.max():.4g} std {y.std():.4g} "
          f"std over bins {y.std(axis=1).mean():.4g} std over tracks {y.std(axis=2).mean():.4g}")


if __name__ == "__main__":
    main()
