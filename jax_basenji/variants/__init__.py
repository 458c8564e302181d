"""Variant effect predictions: `python -m jax_basenji.variants score` (see __main__.py).

  vcf.py      VCF records -> one variant per ALT allele (pysam), streamed
  alleles.py  REF/ALT input windows as upstream basenji_sad.py builds them (flip or skip)
  plan.py     rows grouped into shared windows (clusters); each row an edit of one, or the full path
  incremental.py  exact incremental scoring: the conv tower recomputed on the slice an edit reaches
  score.py    SAD/D2/SAR/REF_SUM/ALT_SUM group by group on the device, resumable
  output.py   sad.h5-compatible HDF5, a TSV summary and a PNG, in row chunks
  merge.py    `variants merge`: --shard K/N files joined into one
"""
