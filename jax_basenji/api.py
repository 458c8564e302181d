"""The Python API: one call loads any model file users hold; predictions, variant scores, ISM and
attributions come back as arrays and DataFrames; fine-tuning and plots are one call each.

    import jax_basenji as jb

    model = jb.load("basenji2.pth")        # basenji2-pytorch; also model_human.h5, a seed .pt
                                           # (variant="basenji2-double-prime"), or a jax_basenji checkpoint
    model.tracks("human")                  # the head's track table, a pandas DataFrame
    y = model.predict("chr1:1,000,000-1,000,500", genome="hg38.fa", tracks=["CAGE"])   # [1, 896, tracks]

Every function takes the model's own conventions from what the file records (N encoding: 0.25 for the
seed's models, 0 for the published one; head track tables; GELU form), so a seed model is never run on
another model's encoding by accident. The command-line tools run the same functions.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from typing import Sequence, Union

import numpy as np

from jax_basenji.errors import InputError

# A sequence input: a DNA string, "chrom:start-end", a one-hot array, or a list of either; a BED path; a
# DataFrame with chrom/start/end columns.
Inputs = Union[str, np.ndarray, Sequence, "pd.DataFrame"]  # noqa: F821
INTERVAL = re.compile(r"[^:\s]+:[\d,]+-[\d,]+")  # chrom:start-end, parsed by evaluate.attribution.parse_region


def load(path: str, *, variant: str | None = None, widths: str = "basenji2", gelu: str | None = None,
         precision: str = "fp32") -> Basenji:
    """A model from a jax_basenji checkpoint directory, a seed `.pt` (needs `variant`: "basenji2-prime" or
    "basenji2-double-prime"), a basenji2-pytorch `.pth` or a Keras `.h5`.

    `widths` "tiny" reads the test preset's layer widths; `gelu` ("sigmoid", "tanh", "erf") overrides a
    published file's GELU form (default sigmoid, the form its weights were trained with); `precision`
    "bf16" computes in bfloat16."""
    from jax_basenji import checkpoint

    if os.path.isdir(path):
        if variant or gelu or widths != "basenji2":
            raise InputError(f"{path} is a checkpoint directory: it records its architecture")
        model, meta = checkpoint.load_model(path, precision)
    else:
        from jax_basenji.convert.foreign import foreign_record
        from jax_basenji.finetune import load_pretrained

        if not os.path.isfile(path):
            raise InputError(f"{path}: no such model file or checkpoint directory")
        arrays, cfg = load_pretrained(path, variant, widths, gelu)
        model = checkpoint.model_with(cfg.replace(dtype="bfloat16") if precision == "bf16" else cfg, arrays)
        meta = foreign_record(cfg)
    model.eval()
    return Basenji(model, meta, os.path.abspath(path))


@dataclasses.dataclass
class Basenji:
    """A loaded model with what its file records (`meta`: N encoding, track tables)."""

    model: object  # jax_basenji.model.Basenji2 (flax nnx), eval mode
    meta: dict
    path: str
    _predictors: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def heads(self) -> list[str]:
        return list(self.model.cfg.head_tracks)

    @property
    def n_value(self) -> float:
        """One-hot value of N bases this model was trained with (0 or 0.25)."""
        return float(self.meta.get("n_value", 0.0))

    def _head(self, head: str | None) -> str:
        head = head or self.heads[0]
        if head not in self.model.cfg.head_tracks:
            raise InputError(f"unknown head {head!r}; this model has {self.heads}")
        return head

    def _targets(self, head: str) -> list[dict] | None:
        from jax_basenji.tracks import recorded_targets

        return recorded_targets(self.meta, head)

    def tracks(self, head: str | None = None):
        """The head's tracks as a DataFrame: index, identifier, description, assay and label (the name
        `tracks=` and every output use)."""
        import pandas as pd

        from jax_basenji.tracks import track_table

        head = self._head(head)
        return pd.DataFrame(track_table(self.model.cfg.head_tracks[head], self._targets(head)))

    def columns(self, head: str, tracks: Sequence | None) -> list[int]:
        """Indices of `tracks` (names, assays such as "CAGE", indices; None: all) in the head's output."""
        from jax_basenji.tracks import select_tracks

        table = self.tracks(head)
        if tracks is None:
            return list(range(len(table)))
        tracks = [tracks] if isinstance(tracks, (str, int)) else tracks
        return select_tracks(list(table["label"]), [str(t) for t in tracks], self._targets(head))

    def predictor(self, head: str, *, rc: bool = False, shifts: Sequence[int] = (0,), devices: int | None = None,
                  n_value: float | None = None, shift_pad: float | None = None):
        """The jitted `Predictor` of a head (cached): `[B, L, 4]` one-hot or `[B, L]` base indices (N 4,
        filled with `n_value`, by default the model's) -> `[B, bins, tracks]`."""
        from jax_basenji.predict.core import Ensemble, Predictor, head_ensemble

        head = self._head(head)
        n_value = self.n_value if n_value is None else n_value
        key = (head, rc, tuple(shifts), devices, n_value, shift_pad)
        if key not in self._predictors:
            ensemble = head_ensemble(Ensemble(rc=rc, shifts=tuple(shifts), shift_pad=shift_pad), self.meta, head)
            self._predictors[key] = Predictor(self.model, head, ensemble, n_value, devices=devices)
        return self._predictors[key]

    def predict(self, inputs: Inputs, head: str | None = None, *, genome: str | None = None,
                tracks: Sequence | None = None, rc: bool = False, shifts: Sequence[int] = (0,),
                batch_size: int = 4, devices: int | None = None, progress: bool = False) -> np.ndarray:
        """`[N, bins, tracks]` float32 predictions of the head (default the first: human).

        `inputs`: a DNA string (ACGTN, any case) or a list of them, all of one length the model accepts;
        `chrom:start-end` strings, a BED path or a DataFrame with chrom/start/end (these need `genome`, a
        FASTA; each is predicted on the model's input window centred on it, bins = the model's output);
        or a one-hot array `[L, 4]` / `[N, L, 4]` predicted as given (N positions already encoded).
        `tracks`: names, assays or indices (default all); `rc`/`shifts`: average over reverse
        complements and shifts in bp, as upstream basenji's --rc --shifts."""
        from jax_basenji.predict.core import batch_for, check_sequences

        head = self._head(head)
        batch, encoded = self.sequences(inputs, genome)
        if encoded:
            check_sequences(batch, self.model)
        else:
            try:
                self.model.cfg.output_bins(batch.shape[1])
            except ValueError as e:
                raise InputError(f"sequences of {batch.shape[1]} bp: {e}") from None
        predictor = self.predictor(head, rc=rc, shifts=shifts, devices=devices,
                                   n_value=0.0 if encoded else None)
        columns = self.columns(head, tracks)
        return np.concatenate([preds[..., columns] for _, preds in
                               predictor.batches(batch, batch_for(batch_size, len(batch)), progress)])

    def sequences(self, inputs: Inputs, genome: str | None = None) -> tuple[np.ndarray, bool]:
        """(`[N, L]` uint8 base indices (A0 C1 G2 T3 N4), or a user's `[N, L, 4]` one-hot, whether it is the
        latter) of `inputs` as `predict` reads them."""
        from jax_basenji.data.genome import Genome, encode

        if type(inputs).__name__ != "DataFrame" and not isinstance(inputs, (str, np.ndarray)):
            inputs = list(inputs)
            if inputs and all(isinstance(i, np.ndarray) for i in inputs):
                inputs = np.stack(inputs)
        if isinstance(inputs, np.ndarray):
            if inputs.ndim == 2:
                inputs = inputs[None]
            if inputs.ndim != 3 or inputs.shape[-1] != 4:
                raise InputError(f"a one-hot array is [length, 4] or [N, length, 4], got shape {inputs.shape}")
            return inputs, True
        if _are_intervals(inputs):
            fasta = Genome(_need_genome(genome))
            length = self.model.cfg.seq_length
            return np.stack([fasta.fetch(w.chrom, w.start, w.start + length)
                             for w in self.windows(inputs, fasta)]), False
        seqs = [inputs] if isinstance(inputs, str) else inputs
        if len({len(s) for s in seqs}) != 1:
            raise InputError(f"sequences of different lengths {sorted({len(s) for s in seqs})[:4]}: "
                             "predict them in separate calls")
        text = "".join(seqs).encode("ascii", "replace")
        idx = encode(text).reshape(len(seqs), -1)
        bad = (idx == 4) & ~np.isin(np.frombuffer(text, np.uint8), np.frombuffer(b"Nn", np.uint8)).reshape(idx.shape)
        if bad.any():  # encode reads any other letter as N, as in a FASTA; a user's string has a typo
            k, pos = np.argwhere(bad)[0]
            raise InputError(f"sequence {k} has {seqs[k][pos]!r} at position {pos}; expected A, C, G, T or N")
        return idx, False

    def windows(self, inputs: Inputs, genome) -> list:
        """The model's input windows (`geometry.Window`) centred on intervals: `chrom:start-end` strings, a
        BED path or a DataFrame with chrom/start/end columns; `genome` a FASTA path or `Genome`."""
        from jax_basenji.data.genome import Genome
        from jax_basenji.geometry import centred_window
        from jax_basenji.predict.regions import check_chromosomes, warn_past_end

        regions = _regions(inputs)
        fasta = genome if isinstance(genome, Genome) else Genome(_need_genome(genome))
        check_chromosomes(regions, fasta, "inputs")
        warn_past_end(regions, fasta, "inputs")
        return [centred_window(r.chrom, r.start, r.end, self.model.cfg.seq_length) for r in regions]

    def score_variants(self, vcf: str, genome: str, head: str | None = None, *, stats: Sequence[str] = ("SAD",),
                       tracks: Sequence | None = None, rc: bool = False, shifts: Sequence[int] = (0,),
                       batch_size: int = 4, devices: int | None = None, progress: bool = False):
        """Scores of every VCF variant as `variants score` computes them, as a DataFrame with two column
        levels: `df["variant"]` (snp, chr, pos, ref, alt, flipped) and `df[stat]` `[variants, tracks]`
        (SAD = sum over bins of alt - ref, ...; `variants score --help`). Variants whose alleles do not
        match the genome are left out, as the command does."""
        import pandas as pd

        from jax_basenji.data.genome import Genome
        from jax_basenji.predict.core import batch_for
        from jax_basenji.variants.__main__ import warn_skipped
        from jax_basenji.variants.score import SKIPPED, scored_chunks, score_variants, window_conventions
        from jax_basenji.variants.vcf import scan

        head = self._head(head)
        fasta = Genome(genome)
        found = scan(vcf)
        missing = sorted(c for c in found.chroms if c not in fasta)
        if missing:
            raise InputError(f"{vcf}: chromosome {missing[0]!r} is not in {genome}")
        if not found.rows:
            raise InputError(f"{vcf}: no variant to score")
        n_value, shift_pad = window_conventions(self.model.cfg, self.meta)
        predictor = self.predictor(head, rc=rc, shifts=shifts, devices=devices, n_value=n_value, shift_pad=shift_pad)
        columns = self.columns(head, tracks)
        names = list(self.tracks(head)["label"].iloc[columns])
        rows = range(found.rows)
        with tempfile.TemporaryDirectory() as tmp:
            arrays, status = score_variants(predictor, fasta, vcf, rows, os.path.join(tmp, "partial"),
                                            length=self.model.cfg.seq_length, columns=columns, stats=tuple(stats),
                                            record={"head": head}, batch_size=batch_for(batch_size, found.rows),
                                            resume=False, progress=progress)
            chunks = list(scored_chunks(vcf, rows, arrays, status))
            warn_skipped(found.symbolic, int((status == SKIPPED).sum()), genome)
            del arrays, status
        table = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}  # found.rows > 0: one chunk at least
        text = {k: [v.decode() for v in table[k]] for k in ("snp", "chr", "ref_allele", "alt_allele")}
        frames = {"variant": pd.DataFrame({"snp": text["snp"], "chr": text["chr"], "pos": table["pos"],
                                           "ref": text["ref_allele"], "alt": text["alt_allele"],
                                           "flipped": table["flipped"]})}
        frames.update({s: pd.DataFrame(table[s], columns=names) for s in stats})
        return pd.concat(frames, axis=1)

    def ism(self, region: str, genome: str, head: str | None = None, *, tracks: Sequence | None = None,
            bins: Sequence[int] | None = None, batch_size: int = 8, devices: int | None = None,
            progress: bool = False):
        """In-silico mutagenesis of `region` ("chrom:start-end", inside one input window): a DataFrame
        `[positions, A C G T]` indexed by genome position, each the change of the mean prediction over
        `bins` (default all) and `tracks` (default all) when that base is put there (0 at the reference)."""
        import pandas as pd

        from jax_basenji.data.genome import Genome
        from jax_basenji.evaluate.attribution import region_in_genome
        from jax_basenji.evaluate.ism import ism_scores

        head = self._head(head)
        fasta = Genome(genome)
        chrom, start, end = region_in_genome(fasta, region, self.model.cfg.seq_length)
        bins = np.arange(self.model.cfg.output_bins(self.model.cfg.seq_length)) if bins is None else np.asarray(bins)
        _, scores = ism_scores(self.predictor(head, devices=devices), fasta, chrom, start, end, bins,
                               np.asarray(self.columns(head, tracks)), batch_size=batch_size, progress=progress)
        return pd.DataFrame(scores, columns=list("ACGT"), index=pd.RangeIndex(start, end, name="position"))

    def attributions(self, region: str, genome: str, head: str | None = None, *, tracks: Sequence | None = None,
                     bins: Sequence[int] | None = None):
        """Input x gradient of the mean prediction over `bins` and `tracks` (default all) on the window
        centred on `region`: a DataFrame `[positions, A C G T]` over the region's bases (the reference
        base's column holds its contribution, the others 0), indexed by genome position."""
        import pandas as pd

        from jax_basenji.data.genome import Genome
        from jax_basenji.evaluate.attribution import region_in_genome, window_attribution
        from jax_basenji.geometry import centred_window

        head = self._head(head)
        fasta = Genome(genome)
        length = self.model.cfg.seq_length
        chrom, start, end = region_in_genome(fasta, region, length)
        bins = np.arange(self.model.cfg.output_bins(length)) if bins is None else np.asarray(bins)
        w_start, contrib = window_attribution(self.model, fasta, centred_window(chrom, start, end, length), head,
                                              bins, np.asarray(self.columns(head, tracks)), self.n_value)
        return pd.DataFrame(contrib[start - w_start:end - w_start], columns=list("ACGT"),
                            index=pd.RangeIndex(start, end, name="position"))


def fine_tune(pretrained: str, data: Sequence[str], workdir: str, **flags) -> dict:
    """`python -m jax_basenji.finetune` from Python: `flags` are its options with underscores
    (`species="human", steps=1000, freeze="trunk", log1p=["rna"]`, `no_progress=True`); returns the run's
    summary (per-head validation metrics, `model` and `model_best` checkpoint paths)."""
    from jax_basenji.finetune import finetune as run, parse_args

    return run(parse_args(["--pretrained", pretrained, "--data", *data, "--workdir", workdir, *_argv(flags)]))


def _argv(flags: dict) -> list[str]:
    argv = []
    for key, value in flags.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value not in (None, False):
            values = value if isinstance(value, (list, tuple)) else [value]
            argv += [flag, *map(str, values)]
    return argv


def plot_tracks(preds: np.ndarray, labels: Sequence[str] | None = None, *, chrom: str = "", start: int = 0,
                pool: int = 128, title: str = ""):
    """A matplotlib Figure of `[bins, tracks]` predictions, one row per track, x in genome kb when
    `start` (the first bin's start) is given."""
    from jax_basenji.predict.plot import tracks_figure

    preds = np.asarray(preds)
    if preds.ndim != 2:
        raise InputError(f"plot_tracks takes [bins, tracks], got shape {preds.shape}")
    labels = list(labels) if labels is not None else [f"t{k}" for k in range(preds.shape[1])]
    return tracks_figure(preds, labels, [], chrom=chrom, start=start, pool=pool, title=title)


def plot_logo(scores, title: str = ""):
    """A matplotlib Figure of a `[positions, A C G T]` DataFrame (`ism`, `attributions`) as a sequence logo."""
    from jax_basenji.evaluate.logo import logo_figure

    return logo_figure(scores, title, "score")


def _are_intervals(inputs) -> bool:
    """A DataFrame, a BED path, or `chrom:start-end` strings (`inputs` a list unless one of the first two)."""
    if type(inputs).__name__ == "DataFrame":
        return True
    if isinstance(inputs, str):
        return bool(INTERVAL.fullmatch(inputs.strip())) or inputs.endswith((".bed", ".bed.gz"))
    return bool(inputs) and all(isinstance(i, str) and INTERVAL.fullmatch(i.strip()) for i in inputs)


def _regions(inputs) -> list:
    from jax_basenji.evaluate.attribution import parse_region
    from jax_basenji.predict.regions import BedRegion, read_regions

    if type(inputs).__name__ == "DataFrame":
        return [BedRegion(str(r.chrom), int(r.start), int(r.end), str(getattr(r, "name", f"{r.chrom}:{r.start}")))
                for r in inputs.itertuples()]
    if isinstance(inputs, str) and not INTERVAL.fullmatch(inputs.strip()):
        return read_regions(inputs)
    return [BedRegion(*parse_region(text), text) for text in ([inputs] if isinstance(inputs, str) else inputs)]


def _need_genome(genome: str | None) -> str:
    if genome is None:
        raise InputError("intervals need genome= (a FASTA with its .fai)")
    return genome
