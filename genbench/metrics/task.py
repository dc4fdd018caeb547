"""Each dataset's own metric, on logits (N, C) against labels; results in percent as the paper's tables give them.

- accuracy: top-1.
- mean_per_class_recall: the mean over classes of per-class recall (Caltech-101, FGVC-Aircraft, Flowers-102, Pets).
- map_11point: VOC-2007 multi-label: per class, the 11-point interpolated average precision of the scores against
  that class's 0/1 ground truth; the mean over classes.
- roc_auc: Hateful Memes: ROC-AUC of the positive class (class 1) scored by the softmax probability of class 1.
"""

from __future__ import annotations

import numpy as np

from genbench.errors import UsageError

METRICS = ("accuracy", "mean_per_class_recall", "map_11point", "roc_auc")


def _accuracy_of(labels: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(pred == labels) * 100.0)


def _mean_per_class_recall_of(labels: np.ndarray, pred: np.ndarray) -> float:
    recalls = [np.mean(pred[labels == c] == c) for c in np.unique(labels)]
    return float(np.mean(recalls) * 100.0)


def accuracy(labels: np.ndarray, logits: np.ndarray) -> float:
    return _accuracy_of(labels, np.argmax(logits, axis=1))


def mean_per_class_recall(labels: np.ndarray, logits: np.ndarray) -> float:
    return _mean_per_class_recall_of(labels, np.argmax(logits, axis=1))


def average_precision_11point(truth: np.ndarray, scores: np.ndarray) -> float:
    """VOC-2007 AP: the mean over recall thresholds 0, 0.1, ..., 1 of the best precision at recall >= threshold."""
    truth = np.asarray(truth).astype(bool)
    n_pos = int(truth.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    hits = truth[order]
    tp = np.cumsum(hits)
    fp = np.cumsum(~hits)
    recall = tp / n_pos
    precision = tp / np.maximum(tp + fp, 1)
    ap = 0.0
    # k / 10, not k * 0.1: 3 * 0.1 is 0.30000000000000004, which would wrongly exclude a recall of exactly 0.3 (e.g. 6/20).
    for t in np.arange(11) / 10.0:
        mask = recall >= t
        ap += (precision[mask].max() if mask.any() else 0.0) / 11.0
    return float(ap)


def map_11point(labels: np.ndarray, logits: np.ndarray) -> float:
    """Mean over classes (with at least one positive) of the 11-point AP; ``labels`` is (N, C) 0/1."""
    if labels.ndim != 2:
        raise UsageError("labels", f"shape {labels.shape}", "(N, C) 0/1 multi-label ground truth for map_11point")
    aps = [average_precision_11point(labels[:, c], logits[:, c]) for c in range(labels.shape[1])]
    aps = [a for a in aps if not np.isnan(a)]
    return float(np.mean(aps) * 100.0)


def _roc_auc_binary(truth: np.ndarray, scores: np.ndarray) -> float:
    # Mann-Whitney U with average ranks for ties: equals the area under the ROC curve.
    from scipy.stats import rankdata

    truth = np.asarray(truth).astype(bool)
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[truth].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_auc(labels: np.ndarray, logits: np.ndarray) -> float:
    z = logits - logits.max(axis=1, keepdims=True)
    prob = np.exp(z)
    prob /= prob.sum(axis=1, keepdims=True)
    return _roc_auc_binary(labels == 1, prob[:, 1]) * 100.0


_FUNCS = {
    "accuracy": accuracy,
    "mean_per_class_recall": mean_per_class_recall,
    "map_11point": map_11point,
    "roc_auc": roc_auc,
}


# Metrics that read only each row's top class: a linear classifier's logits need never exist whole for them.
_OF_PREDICTIONS = {"accuracy": _accuracy_of, "mean_per_class_recall": _mean_per_class_recall_of}
_ROWS = 8192  # rows of logits at a time: 8192 x 1,000 float32 is 32 MB, cache-friendly where 50,000 x 1,000 is not


def linear_predictions(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``argmax(x @ weights.T, axis=1)`` without the (N, C) logits: float32 rows in blocks, through torch's matmul."""
    import torch

    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    wt = torch.from_numpy(np.ascontiguousarray(np.asarray(weights, dtype=np.float32).T))
    out = torch.empty((min(_ROWS, len(xt)), wt.shape[1]), dtype=torch.float32)
    preds = [torch.mm(xt[i : i + _ROWS], wt, out=out[: len(xt[i : i + _ROWS])]).argmax(dim=1)
             for i in range(0, len(xt), _ROWS)]
    return torch.cat(preds).numpy() if preds else np.zeros(0, dtype=np.int64)


def score_linear(metric: str, labels: np.ndarray, x: np.ndarray, weights: np.ndarray) -> float:
    """:func:`score` of the logits ``x @ weights.T``; for argmax metrics computed block by block (no (N, C) array)."""
    if metric not in _OF_PREDICTIONS:
        return score(metric, labels, np.asarray(x, dtype=np.float32) @ np.asarray(weights, dtype=np.float32).T)
    return _OF_PREDICTIONS[metric](np.asarray(labels), linear_predictions(x, weights))


def score(metric: str, labels: np.ndarray, logits: np.ndarray) -> float:
    """Score ``logits`` against ``labels`` with the named metric, in percent."""
    if metric not in _FUNCS:
        raise UsageError("metric", metric, METRICS)
    logits = np.asarray(logits)
    if metric in ("map_11point", "roc_auc"):  # rankings and softmax: float64; argmax metrics need no copy
        logits = logits.astype(np.float64)
    return _FUNCS[metric](np.asarray(labels), logits)
