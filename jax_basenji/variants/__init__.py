"""Variant effect predictions: `python -m jax_basenji.variants score` (see __main__.py).

  vcf.py      VCF records -> one variant per ALT allele (pysam)
  alleles.py  REF/ALT input windows, REF checked against the FASTA (flip or skip)
  score.py    SAD/REF/ALT/SAR/D2 batch by batch, resumable
  output.py   sad.h5-compatible HDF5, a TSV summary and a PNG
"""
