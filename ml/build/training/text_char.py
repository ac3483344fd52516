"""Fit the hashed character n-gram model (ml.text_hate.CharModel) on labelled texts.

The features come from the runtime's own featuriser (``ml.text_hate.char_features``), so training and
serving cannot drift. The fit is an L2-regularised logistic regression on a sparse matrix of 2^18
columns: scikit-learn's liblinear (build time only). The one numpy trainer (ml.build.logistic) is
dense and would need a 100k x 262k matrix; it fits the small heads (the stacker) instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ml.text_hate import CHAR_BUCKETS, CharModel, char_features

DEFAULT_C = 1.0


def char_matrix(texts: list[str]) -> Any:
    """CSR matrix (len(texts), CHAR_BUCKETS) of the runtime features."""
    from scipy.sparse import csr_matrix

    indptr, indices, values = [0], [], []
    for text in texts:
        index, value = char_features(text)
        indices.append(index)
        values.append(value)
        indptr.append(indptr[-1] + len(index))
    # int32 indices: liblinear refuses 64-bit ones (fine: 2^18 columns, < 2^31 stored values)
    return csr_matrix((np.concatenate(values) if values else np.zeros(0, np.float32),
                       (np.concatenate(indices) if indices else np.zeros(0, np.int64)).astype(np.int32),
                       np.asarray(indptr, np.int32)),
                      shape=(len(texts), CHAR_BUCKETS), dtype=np.float32)


def fit_char_model(x: Any, labels: np.ndarray, c: float = DEFAULT_C) -> CharModel:
    """liblinear is deterministic for a given matrix, so the same rows give the same weights."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, solver="liblinear", max_iter=200)
    model.fit(x, labels.astype(np.int64))
    # Stored as float16 (512 KB): round now so the scores reported are the ones the runtime computes.
    weights = model.coef_.reshape(-1).astype(np.float16).astype(np.float32)
    return CharModel(weights=weights, bias=float(model.intercept_[0]))


def char_logits(model: CharModel, x: Any) -> np.ndarray:
    """Logits for a feature matrix (same numbers as CharModel.logits on the texts, much faster)."""
    return np.asarray(x @ model.weights + model.bias, np.float32).reshape(-1)
