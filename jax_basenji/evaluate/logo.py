"""Sequence-logo PNGs (logomaker) of per-position, per-base scores."""

from __future__ import annotations

import numpy as np

from jax_basenji.metrics import pyplot, save_png


def logo_png(scores: np.ndarray, first_position: int, path: str, title: str, ylabel: str,
             max_positions: int = 400) -> str:
    """`scores` `[positions, 4]` (A, C, G, T) drawn as letters of signed height; at most the central
    `max_positions` positions (a logo of a whole window is unreadable)."""
    import pandas as pd

    if len(scores) > max_positions:
        cut = (len(scores) - max_positions) // 2
        scores, first_position = scores[cut:cut + max_positions], first_position + cut
    frame = pd.DataFrame(np.asarray(scores, np.float64), columns=list("ACGT"),
                         index=first_position + np.arange(len(scores)))
    return save_png(logo_figure(frame, title, ylabel), path)


def logo_figure(frame, title: str, ylabel: str):
    """A matplotlib Figure of a `[positions, A C G T]` DataFrame indexed by genome position."""
    import logomaker

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(min(2 + 0.06 * len(frame), 30), 2.6))
    logomaker.Logo(frame.astype(np.float64), ax=ax, color_scheme="classic")
    ax.axhline(0, color="k", linewidth=0.5)
    # genome positions as written (matplotlib would show "+6e4" offsets), a title that fits a short logo
    ax.ticklabel_format(axis="x", style="plain", useOffset=False)
    ax.set(xlabel="position", ylabel=ylabel)
    ax.set_title(title, fontsize=9, wrap=True)
    fig.tight_layout()
    return fig
