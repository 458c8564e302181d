"""Ridge regression from CAGE predictions at TSS to cell-type expression (the seed's notebook).

X: the selected tracks of a TSS matrix (`evaluate tss`) on the log(x+1) scale (transformed,
except the columns predicted on that scale already: `log1p` 1 in tss_tracks.txt), each
standardised with the *training* genes' mean and std. Y: log(x+1) expression
per cell type. One `sklearn.linear_model.Ridge` per cell type, fitted on the
genes of the training subsets, scored on the test genes: Pearson R per cell
type (across test genes) and per test gene (across cell types, after z-scoring
every cell type across the test genes, predictions and observed alike).

The alpha sweep repeats the fit for every penalty of a grid (the notebook's
0, 0.5, 1, 2, 3) and reports both mean R per alpha.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from scipy.linalg import LinAlgWarning
from sklearn.linear_model import Ridge, RidgeCV

from jax_basenji.cli import InputError
from jax_basenji.evaluate.common import (histogram, log1p_clipped, nanmean, pearson_columns, scatter, standardize,
                                         write_tsv)
from jax_basenji.evaluate.tss import predictions_log1p, read_expression, read_matrix, subsets_of
from jax_basenji.metrics import pyplot, save_png
from jax_basenji.tracks import select_tracks

CV_ALPHAS = np.logspace(-3, 4, 15)


def fit_predict(xs: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, alpha: float | None):
    """One ridge per cell type: (`[test genes, cell types]` predictions, coefs, intercepts, alphas).

    `xs` `[genes, tracks]` standardised predictions, `y` `[genes, cell types]`; alpha None: RidgeCV.
    """
    coefs, intercepts, alphas = [], [], []
    y_hat = np.zeros((int(test.sum()), y.shape[1]))
    for c in range(y.shape[1]):
        with warnings.catch_warnings():
            # alpha 0 is ordinary least squares; some scipy / sklearn versions warn of the
            # conditioning of the normal equations, which the seed's notebook fitted all the same.
            warnings.simplefilter("ignore", LinAlgWarning)
            model = (RidgeCV(alphas=CV_ALPHAS) if alpha is None else Ridge(alpha=alpha)).fit(xs[train], y[train, c])
        coefs.append(model.coef_)
        intercepts.append(model.intercept_)
        alphas.append(model.alpha_ if alpha is None else alpha)
        y_hat[:, c] = model.predict(xs[test])
    return y_hat, coefs, intercepts, alphas


def scores(y_hat: np.ndarray, y_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(`[cell types]` R across test genes, `[test genes]` R across cell types of z-scored columns)."""
    return (pearson_columns(y_hat, y_test, axis=0),
            pearson_columns(standardize(y_hat), standardize(y_test), axis=1))


def alpha_sweep(xs, y, train, test, grid: list[float], output: str) -> list[dict]:
    """Mean R per cell type and per gene on the test genes for every alpha; TSV and PNG."""
    rows = []
    for a in grid:
        per_cell, per_gene = scores(fit_predict(xs, y, train, test, a)[0], y[test])
        rows.append({"alpha": a, "per_cell_type_r": nanmean(per_cell), "per_gene_r": nanmean(per_gene)})
    write_tsv(os.path.join(output, "ridge_alpha_sweep.tsv"), ["alpha", "per_cell_type_r", "per_gene_r"],
              ([r["alpha"], r["per_cell_type_r"], r["per_gene_r"]] for r in rows))
    fig, ax = pyplot().subplots(figsize=(6, 4))
    for key, label in (("per_cell_type_r", "per cell type"), ("per_gene_r", "per gene")):
        ax.plot(grid, [r[key] for r in rows], marker="o", label=label)
    ax.set(xlabel="ridge alpha", ylabel="mean Pearson R (test genes)", title="ridge alpha sweep")
    ax.legend()
    save_png(fig, os.path.join(output, "ridge_alpha_sweep.png"))
    return rows


def ridge_eval(matrix_path: str, expression_path: str, tracks: list[str], output: str, *,
               targets: list[dict[str, str]] | None = None, train_subsets=("train", "valid"),
               test_subset: str = "test", alpha: float | None = 1.0,
               alpha_grid: list[float] = (0.0, 0.5, 1.0, 2.0, 3.0), log_scale: np.ndarray | None = None) -> dict:
    """Fit and score; `alpha=None` picks it per cell type by leave-one-out CV. Writes TSVs and PNGs.

    `log_scale`: `[columns of the matrix]` bool, those on the log(x+1) scale already (taken as they are).
    """
    genes, pred, names = read_matrix(matrix_path)
    if log_scale is not None and len(log_scale) != len(names):
        raise InputError(f"{matrix_path} has {len(names)} track columns; its tracks table marks {len(log_scale)} "
                         f"as log1p or not")
    cols = select_tracks(names, tracks, targets)
    gene_row, expr, cell_types = read_expression(expression_path)
    keep = [i for i, g in enumerate(genes) if g.gene_id in gene_row]
    if not keep:
        raise InputError(f"no gene of {matrix_path} is in {expression_path}")
    genes = [genes[i] for i in keep]
    present = subsets_of(genes)
    # A training subset may be absent (train + valid by default) as long as one is there.
    for wanted in ([test_subset], train_subsets):
        if not any(s in present for s in wanted):
            raise InputError(f"unknown subset {' / '.join(map(repr, wanted))}: the genes of {matrix_path} found in "
                             f"{expression_path} are in {', '.join(present) or 'no subset'}")
    x = predictions_log1p(pred[keep], log_scale)[:, cols]
    y = log1p_clipped(expr[[gene_row[g.gene_id] for g in genes]])
    train = np.array([g.subset in train_subsets for g in genes])
    test = np.array([g.subset == test_subset for g in genes])
    if train.sum() < 2 or test.sum() < 2:
        raise InputError(f"{int(train.sum())} training genes ({'/'.join(train_subsets)}) and {int(test.sum())} "
                         f"test genes ({test_subset}): need at least 2 of each")
    xs = standardize(x, x[train].mean(axis=0), x[train].std(axis=0))
    y_hat, coefs, intercepts, alphas = fit_predict(xs, y, train, test, alpha)
    y_test = y[test]
    per_cell, per_gene = scores(y_hat, y_test)
    test_genes = [g for g, t in zip(genes, test) if t]

    os.makedirs(output, exist_ok=True)
    track_names = [names[i] for i in cols]
    write_tsv(os.path.join(output, "ridge_coefficients.tsv"), ["cell_type", "alpha", "intercept", *track_names],
              ([ct, a, b, *w] for ct, a, b, w in zip(cell_types, alphas, intercepts, coefs)))
    write_tsv(os.path.join(output, "ridge_per_cell_type.tsv"), ["cell_type", "pearson_r"], zip(cell_types, per_cell))
    write_tsv(os.path.join(output, "ridge_per_gene.tsv"), ["gene_id", "pearson_r"],
              ((g.gene_id, r) for g, r in zip(test_genes, per_gene)))
    write_tsv(os.path.join(output, "ridge_test_predictions.tsv"), ["gene_id", *cell_types],
              ([g.gene_id, *v] for g, v in zip(test_genes, y_hat)))
    histogram(per_cell, os.path.join(output, "ridge_per_cell_type_hist.png"),
              "Pearson R per cell type (test genes)", "ridge on CAGE at TSS")
    scatter(y_hat, y_test, os.path.join(output, "ridge_scatter.png"), "ridge prediction, log(x+1)",
            "measured, log(x+1)", "test genes x cell types")
    sweep = alpha_sweep(xs, y, train, test, list(alpha_grid), output)
    as_is = [] if log_scale is None else [names[i] for i in cols if log_scale[i]]
    return {"alpha": "cv" if alpha is None else alpha, "train_genes": int(train.sum()),
            "test_genes": int(test.sum()), "tracks": len(cols), "log_scale_tracks": as_is,
            "cell_types": len(cell_types), "per_cell_type_r": nanmean(per_cell), "per_gene_r": nanmean(per_gene),
            "alpha_sweep": sweep}
