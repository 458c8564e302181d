"""Basenji2 data without TensorFlow: TFRecords -> store -> grain pipeline.

  python -m jax_basenji.data synth   --output DIR ...     synthetic data in the Basenji layout
  python -m jax_basenji.data convert --input DIR --output STORE ...
"""

from jax_basenji.data.layout import DataError
from jax_basenji.data.pipeline import make_dataset
from jax_basenji.data.source import BasenjiSource, ConcatSource
from jax_basenji.data.tfrecord import RecordError

__all__ = ["BasenjiSource", "ConcatSource", "DataError", "RecordError", "make_dataset"]
