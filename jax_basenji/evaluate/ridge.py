"""Ridge regression from CAGE predictions at TSS to cell-type expression (docs/seed_reference.md).

X: the selected tracks of a TSS matrix (`evaluate tss`), log(x+1), each
standardised with the *training* genes' mean and std. Y: log(x+1) expression
per cell type. One `sklearn.linear_model.Ridge` per cell type, fitted on the
genes of the training subsets, scored on the test genes: Pearson R per cell
type (across test genes) and per test gene (across cell types).
"""

from __future__ import annotations

import os

import numpy as np
from sklearn.linear_model import Ridge, RidgeCV

from jax_basenji.cli import InputError
from jax_basenji.evaluate.common import histogram, pearson_columns, scatter, standardize, write_tsv
from jax_basenji.evaluate.tss import read_expression, read_matrix

CV_ALPHAS = np.logspace(-3, 4, 15)


def select_tracks(names: list[str], spec: list[str], targets: list[dict[str, str]] | None) -> list[int]:
    """Column indices for `spec`: assay names (via targets.txt descriptions), identifiers or indices."""
    from jax_basenji.metrics import assays

    kinds = assays(targets) if targets is not None else None
    chosen: list[int] = []
    for item in spec:
        if item in names:
            chosen.append(names.index(item))
        elif item.isdigit() and int(item) < len(names):
            chosen.append(int(item))
        elif kinds is not None and item.upper() in kinds:
            if len(kinds) != len(names):
                raise InputError(f"the targets table has {len(kinds)} tracks; the TSS matrix has {len(names)}")
            chosen += [i for i, k in enumerate(kinds) if k == item.upper()]
        else:
            hint = "" if kinds is not None else " (pass --targets-txt to select by assay)"
            raise InputError(f"--tracks {item!r} is neither a column of the TSS matrix nor an assay{hint}")
    if not chosen:
        raise InputError("--tracks selects no track")
    return sorted(set(chosen))


def ridge_eval(matrix_path: str, expression_path: str, tracks: list[str], output: str, *,
               targets: list[dict[str, str]] | None = None, train_subsets=("train", "valid"),
               test_subset: str = "test", alpha: float | None = 1.0) -> dict:
    """Fit and score; `alpha=None` picks it per cell type by leave-one-out CV. Writes TSVs and PNGs."""
    genes, pred, names = read_matrix(matrix_path)
    cols = select_tracks(names, tracks, targets)
    gene_row, expr, cell_types = read_expression(expression_path)
    keep = [i for i, g in enumerate(genes) if g.gene_id in gene_row]
    if not keep:
        raise InputError(f"no gene of {matrix_path} is in {expression_path}")
    genes = [genes[i] for i in keep]
    x = np.log1p(np.maximum(pred[keep][:, cols], 0))
    y = np.log1p(np.maximum(expr[[gene_row[g.gene_id] for g in genes]], 0))
    train = np.array([g.subset in train_subsets for g in genes])
    test = np.array([g.subset == test_subset for g in genes])
    if train.sum() < 2 or test.sum() < 2:
        raise InputError(f"{int(train.sum())} training genes ({'/'.join(train_subsets)}) and {int(test.sum())} "
                         f"test genes ({test_subset}): need at least 2 of each (check the subset column)")
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    xs = standardize(x, mean, std)

    coefs, intercepts, alphas, y_hat = [], [], [], np.zeros((int(test.sum()), len(cell_types)))
    for c in range(len(cell_types)):
        model = (RidgeCV(alphas=CV_ALPHAS) if alpha is None else Ridge(alpha=alpha)).fit(xs[train], y[train, c])
        coefs.append(model.coef_)
        intercepts.append(model.intercept_)
        alphas.append(model.alpha_ if alpha is None else alpha)
        y_hat[:, c] = model.predict(xs[test])
    y_test = y[test]
    per_cell = pearson_columns(y_hat, y_test, axis=0)
    per_gene = pearson_columns(y_hat, y_test, axis=1)
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
    return {"train_genes": int(train.sum()), "test_genes": int(test.sum()), "tracks": len(cols),
            "cell_types": len(cell_types), "per_cell_type_r": float(np.nanmean(per_cell)),
            "per_gene_r": float(np.nanmean(per_gene))}
