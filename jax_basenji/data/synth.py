"""Synthetic data in the exact Basenji2 layout, with targets the sequence explains.

  python -m jax_basenji.data synth --output DIR [--species human mouse]
      [--seq-length 131072] [--tracks human=5313,mouse=1643] [--examples train=64,valid=16,test=16]

Per species: `{genome}.ml.fa` (+ .fai) at DIR, and DIR/{species}/ with
statistics.json, sequences.bed, targets.txt and ZLIB TFRecords
`tfrecords/{subset}-N.tfr` (readable by TensorFlow's TFRecordDataset).

How targets depend on the sequence: a handful of random motifs (8-12 bp) are
planted in a random genome, each in a random orientation. Every track is a
positive combination of 1-3 motifs: unstranded tracks count both
orientations, the + / - track of a stranded pair (targets.txt strand_pair)
counts only forward / reverse-complement instances. Motif counts per 128 bp
bin are smoothed over neighbouring bins, scaled, and multiplied by
log-normal noise. Train, valid and test regions lie on different
chromosomes. Regions start at chromosome ends so that FASTA re-extraction at
longer lengths exercises the N padding.
"""

from __future__ import annotations

import dataclasses
import os
import shutil

import numpy as np
from tqdm import tqdm

from jax_basenji.atomic import atomic_path, write_json
from jax_basenji.data.layout import SUBSETS, DataError, index_to_one_hot
from jax_basenji.data.tfrecord import serialize_bytes_features, write_records

GENOMES = {"human": "hg38", "mouse": "mm10"}
REFERENCE_TARGETS = {"human": ("targets_human.txt", 5313), "mouse": ("targets_mouse.txt", 1643)}
ASSAYS = ("CAGE", "DNASE", "ATAC", "CHIP")
FASTA_LINE = 60


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    seq_length: int = 131_072  # bp per example
    tracks: int = 5313  # targets per example
    examples: tuple[tuple[str, int], ...] = (("train", 64), ("valid", 16), ("test", 16))
    pool_width: int = 128  # bp per target bin
    crop_bp: int | None = None  # bp without targets at each end (default seq_length / 16)
    motifs: int = 6  # distinct planted motifs
    motif_spacing: int = 200  # mean bp between planted motifs
    noise: float = 0.1  # sd of the log-normal target noise
    scale: float = 8.0  # coverage per motif instance (Basenji targets are counts, not fractions)
    records_per_file: int = 16  # examples per TFRecord file
    sequence_encoding: str = "index"  # "index" ((L,) uint8, seq_1hot) or "one-hot" ((L, 4))
    seed: int = 0

    @property
    def crop(self) -> int:
        return self.seq_length // 16 if self.crop_bp is None else self.crop_bp

    @property
    def target_length(self) -> int:
        return (self.seq_length - 2 * self.crop) // self.pool_width


# The real Basenji2 target tables ship with the package (jax_basenji/data/reference).
REFERENCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference")


def _targets_table(species: str, tracks: int, genome_index: int) -> tuple[list[str], np.ndarray]:
    """targets.txt lines and the strand-pair permutation (the real table at the real track count)."""
    name, count = REFERENCE_TARGETS.get(species, (None, -1))
    if tracks == count:
        with open(os.path.join(REFERENCE_DIR, name)) as f:
            return f.read().splitlines(), np.arange(tracks)
    header = "index\tgenome\tidentifier\tfile\tclip\tscale\tsum_stat\tdescription\tstrand\tstrand_pair"
    lines, pair = [header], np.arange(tracks)
    for t in range(tracks):
        assay, strand, partner = ASSAYS[t % len(ASSAYS)], ".", t
        if t > 0 and pair[t - 1] == t:  # the - strand of the CAGE pair before
            assay, strand, partner = "CAGE", "-", t - 1
        elif assay == "CAGE" and t + 1 < tracks:  # CAGE is stranded: tracks t (+) and t+1 (-)
            strand, partner = "+", t + 1
        pair[t] = partner
        lines.append(f"{t}\t{genome_index}\tSYN{t:05d}\tsynthetic/{species}/{t}.w5\t32\t2\tsum\t"
                     f"{assay}:synthetic {species} track {t}\t{strand}\t{partner}")
    return lines, pair


def _write_fasta(path: str, chroms: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    """FASTA with soft-masked (lower-case) stretches and its .fai, written atomically."""
    fai = []
    with open(path + ".tmp", "wb") as f:
        offset = 0
        for name, index in chroms.items():
            text = np.frombuffer(b"ACGTN", np.uint8)[index].copy()
            for start in rng.integers(0, len(text), size=max(1, len(text) // 20_000)):
                text[start:start + 500] += 32  # lower case
            header = f">{name}\n".encode()
            f.write(header)
            offset += len(header)
            body = b"".join(text[i:i + FASTA_LINE].tobytes() + b"\n" for i in range(0, len(text), FASTA_LINE))
            f.write(body)
            fai.append(f"{name}\t{len(text)}\t{offset}\t{FASTA_LINE}\t{FASTA_LINE + 1}\n")
            offset += len(body)
    with open(path + ".fai.tmp", "w") as f:
        f.writelines(fai)
    os.replace(path + ".tmp", path)
    os.replace(path + ".fai.tmp", path + ".fai")


def synth_species(out_dir: str, species: str, cfg: SynthConfig, genome_index: int = 0,
                  progress: bool = True) -> str:
    """Write one species; returns its directory."""
    rng = np.random.default_rng([cfg.seed, genome_index])
    counts = dict(cfg.examples)
    if cfg.target_length <= 0 or (cfg.seq_length - 2 * cfg.crop) % cfg.pool_width:
        raise DataError(f"seq_length {cfg.seq_length} with crop {cfg.crop} bp gives no whole {cfg.pool_width} bp bins")
    # One chromosome group per subset; a few chromosomes for train, gaps between regions.
    gap = cfg.seq_length // 4
    layout = {"train": max(1, min(4, counts.get("train", 0))), "valid": 1, "test": 1}
    chroms, regions, c = {}, [], 1
    for subset in SUBSETS:
        n = counts.get(subset, 0)
        per_chrom = np.array_split(np.arange(n), layout[subset])
        for ids in per_chrom:
            name = f"chr{c}"
            c += 1
            chroms[name] = rng.integers(0, 4, size=len(ids) * (cfg.seq_length + gap) + gap, dtype=np.uint8)
            regions += [(name, k * (cfg.seq_length + gap), k * (cfg.seq_length + gap) + cfg.seq_length, subset)
                        for k in range(len(ids))]
    # Plant motifs; remember (chrom, centre, motif, forward?).
    motifs = [rng.integers(0, 4, size=int(rng.integers(8, 13)), dtype=np.uint8) for _ in range(cfg.motifs)]
    planted = {}
    for name, seq in chroms.items():
        n = len(seq) // cfg.motif_spacing
        pos = np.sort(rng.integers(0, len(seq) - 12, size=n))
        which, forward = rng.integers(0, cfg.motifs, size=n), rng.random(n) < 0.5
        for p, m, fwd in zip(pos, which, forward):
            site = motifs[m] if fwd else (3 - motifs[m])[::-1]
            seq[p:p + len(site)] = site
        planted[name] = (pos + 6, which, forward)
    for name, seq in chroms.items():  # a few N runs, as in real assemblies
        for start in rng.integers(0, len(seq), size=2):
            seq[start:start + 50] = 4
    # Track weights over (motif, orientation) features: [tracks, 2 * motifs].
    targets_lines, pair = _targets_table(species, cfg.tracks, genome_index)
    weights = np.zeros((cfg.tracks, 2 * cfg.motifs), np.float32)
    for t in range(cfg.tracks):
        if pair[t] < t:  # the - strand partner mirrors the + track on reverse instances
            weights[t, : cfg.motifs], weights[t, cfg.motifs:] = weights[pair[t], cfg.motifs:], weights[pair[t], : cfg.motifs]
            continue
        chosen = rng.choice(cfg.motifs, size=int(rng.integers(1, 4)), replace=False)
        w = rng.uniform(0.5, 2.0, size=len(chosen))
        weights[t, chosen] = w
        if pair[t] == t:  # unstranded: both orientations count
            weights[t, cfg.motifs + chosen] = w
    baseline = rng.uniform(0.05, 0.3, size=cfg.tracks).astype(np.float32)
    smooth = np.array([0.25, 0.5, 1.0, 0.5, 0.25], np.float32)

    species_dir = os.path.join(out_dir, species)
    tfr_dir = os.path.join(species_dir, "tfrecords")
    if os.path.exists(tfr_dir):  # a re-run replaces the previous records whole
        shutil.rmtree(tfr_dir)
    os.makedirs(tfr_dir)
    _write_fasta(os.path.join(out_dir, f"{GENOMES.get(species, species)}.ml.fa"), chroms, rng)

    def example(region):
        name, start, end, _ = region
        pos, which, forward = planted[name]
        lo, hi = start + cfg.crop, end - cfg.crop
        inside = (pos >= lo) & (pos < hi)
        feats = np.zeros((cfg.target_length, 2 * cfg.motifs), np.float32)
        np.add.at(feats, ((pos[inside] - lo) // cfg.pool_width,
                          which[inside] + cfg.motifs * (~forward[inside])), 1.0)
        feats = np.apply_along_axis(lambda col: np.convolve(col, smooth, mode="same"), 0, feats)
        signal = cfg.scale * (baseline + feats @ weights.T)
        noise = np.exp(rng.normal(0.0, cfg.noise, size=signal.shape)).astype(np.float32)
        target = (signal * noise).astype(np.float16)
        index = chroms[name][start:end]
        if cfg.sequence_encoding == "one-hot":
            seq_bytes = index_to_one_hot(index).astype(bool).tobytes()
        else:
            seq_bytes = index.tobytes()
        return serialize_bytes_features({"sequence": seq_bytes, "target": target.tobytes()})

    bar = tqdm(total=len(regions), desc=f"synth {species}", unit="example", disable=not progress)
    for subset in SUBSETS:
        rows = [r for r in regions if r[3] == subset]
        for k in range(0, len(rows), cfg.records_per_file):
            chunk = rows[k:k + cfg.records_per_file]
            path = os.path.join(tfr_dir, f"{subset}-{k // cfg.records_per_file}.tfr")
            with atomic_path(path) as tmp:
                write_records(tmp, (example(r) for r in chunk))
            bar.update(len(chunk))
    bar.close()

    with open(os.path.join(species_dir, "sequences.bed"), "w") as f:
        f.writelines(f"{c}\t{s}\t{e}\t{sub}\n" for c, s, e, sub in regions)
    with open(os.path.join(species_dir, "targets.txt"), "w") as f:
        f.write("\n".join(targets_lines) + "\n")
    stats = {"num_targets": cfg.tracks, "seq_length": cfg.seq_length, "pool_width": cfg.pool_width,
             "crop_bp": cfg.crop, "target_length": cfg.target_length,
             **{f"{s}_seqs": counts.get(s, 0) for s in SUBSETS},
             "seq_1hot": cfg.sequence_encoding == "index"}
    write_json(os.path.join(species_dir, "statistics.json"), stats)
    return species_dir


def synth(out_dir: str, species: dict[str, int], cfg: SynthConfig, progress: bool = True) -> dict[str, str]:
    """Write every species in `species` ({name: tracks}); returns {name: directory}."""
    os.makedirs(out_dir, exist_ok=True)
    return {name: synth_species(out_dir, name, dataclasses.replace(cfg, tracks=tracks), i, progress)
            for i, (name, tracks) in enumerate(species.items())}
