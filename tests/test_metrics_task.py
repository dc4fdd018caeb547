"""genbench.metrics.task against scikit-learn on random inputs, and the VOC 11-point mAP against a hand-worked example."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, precision_recall_curve, roc_auc_score

from genbench.errors import UsageError
from genbench.metrics import task

SEEDS = [0, 1, 2, 3, 4]


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("seed", SEEDS)
def test_accuracy_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    n, c = 300, 9
    labels = rng.integers(0, c, size=n)
    # Logits that are right more often than chance, so the score is not a trivial constant.
    logits = rng.normal(size=(n, c))
    logits[np.arange(n), labels] += rng.uniform(0, 2, size=n)
    expected = accuracy_score(labels, logits.argmax(1)) * 100
    assert task.score("accuracy", labels, logits) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_mean_per_class_recall_is_balanced_accuracy(seed):
    rng = np.random.default_rng(seed)
    n, c = 400, 8
    # Imbalanced classes (recall mean differs from accuracy), and class 7 never occurs in the labels but can be predicted.
    p = rng.dirichlet(np.ones(c - 1) * 0.7)
    labels = rng.choice(c - 1, size=n, p=p)
    logits = rng.normal(size=(n, c))
    logits[np.arange(n), labels] += rng.uniform(0, 1.5, size=n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns that a predicted class is absent from y_true
        expected = balanced_accuracy_score(labels, logits.argmax(1)) * 100
    got = task.score("mean_per_class_recall", labels, logits)
    assert got == pytest.approx(expected, abs=1e-9)
    assert got != pytest.approx(task.score("accuracy", labels, logits), abs=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ties", [False, True])
def test_roc_auc_matches_sklearn(seed, ties):
    rng = np.random.default_rng(seed)
    n = 250
    labels = rng.integers(0, 2, size=n)
    logits = rng.normal(size=(n, 2))
    logits[:, 1] += labels * rng.uniform(0, 1.0)
    if ties:
        logits = np.round(logits, 1)  # many tied probabilities: average-rank handling must agree with sklearn
    expected = roc_auc_score(labels, _softmax(logits)[:, 1]) * 100
    assert task.score("roc_auc", labels, logits) == pytest.approx(expected, abs=1e-9)


def test_map_11point_hand_worked_example():
    # Two classes, five images. Rows are images, columns classes.
    labels = np.array([[1, 0], [0, 1], [0, 1], [1, 0], [0, 1], [0, 0]])
    logits = np.array([[0.9, 0.1], [0.8, 0.9], [0.7, 0.3], [0.6, 0.8], [0.5, 0.2], [0.05, 0.0]])
    # Class 0: ranked by score the truth is 1,0,0,1,0,0 with 2 positives.
    #   rank 1: TP, recall 1/2, precision 1/1
    #   rank 2: FP, recall 1/2, precision 1/2
    #   rank 3: FP, recall 1/2, precision 1/3
    #   rank 4: TP, recall 2/2, precision 2/4 = 0.5
    #   rank 5, 6: FP, recall 1, precision 2/5, 2/6
    #   thresholds 0, .1, .2, .3, .4, .5 (6 of them): best precision at recall >= t is 1.0
    #   thresholds .6, .7, .8, .9, 1.0 (5): only recall-1 points count, best precision 0.5
    #   AP0 = (6 * 1.0 + 5 * 0.5) / 11 = 8.5 / 11
    # Class 1: scores .9 (T), .8 (F), .3 (T), .2 (T), .1 (F), .0 (F) after sorting, 3 positives.
    #   rank 1: recall 1/3, precision 1
    #   rank 2: recall 1/3, precision 1/2
    #   rank 3: recall 2/3, precision 2/3
    #   rank 4: recall 3/3, precision 3/4
    #   rank 5, 6: recall 1, precision 3/5, 3/6
    #   thresholds 0, .1, .2, .3 (4): the rank-1 point counts, best precision 1.0
    #   thresholds .4, .5, .6 (3): points with recall 2/3 or 1, best precision 0.75
    #   thresholds .7, .8, .9, 1.0 (4): recall-1 points, best precision 0.75
    #   AP1 = (4 * 1.0 + 7 * 0.75) / 11 = 9.25 / 11
    # mAP = (8.5 + 9.25) / 22 = 17.75 / 22 = 0.806818...
    assert task.average_precision_11point(labels[:, 0], logits[:, 0]) == pytest.approx(8.5 / 11)
    assert task.average_precision_11point(labels[:, 1], logits[:, 1]) == pytest.approx(9.25 / 11)
    assert task.score("map_11point", labels, logits) == pytest.approx(100 * 17.75 / 22)


def test_map_11point_skips_classes_without_positives():
    labels = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]])
    logits = np.array([[0.9, 0.1, 3], [0.8, 0.9, 2], [0.7, 0.3, 1], [0.6, 0.8, 0], [0.5, 0.2, 0], [0.05, 0.0, 0]])
    # Column 2 has no positive image: VOC leaves it out of the mean rather than counting it as 0.
    assert task.score("map_11point", labels, logits) == pytest.approx(100 * 17.75 / 22)


def _ap11_from_sklearn(truth: np.ndarray, scores: np.ndarray) -> float:
    precision, recall, _ = precision_recall_curve(truth, scores)
    # sklearn appends the artificial (recall 0, precision 1) end point; VOC does not have it.
    precision, recall = precision[:-1], recall[:-1]
    ap = 0.0
    for i in range(11):
        t = i / 10
        mask = recall >= t - 1e-12
        ap += precision[mask].max() if mask.any() else 0.0
    return ap / 11


@pytest.mark.parametrize("seed", SEEDS)
def test_map_11point_multilabel_voc_style_random(seed):
    rng = np.random.default_rng(seed)
    n, c = 200, 20
    labels = (rng.random((n, c)) < 0.12).astype(np.uint8)  # VOC-style (N, C) 0/1, several labels per image possible
    labels[0] = 1  # every class has a positive
    logits = rng.normal(size=(n, c)) + 1.2 * labels  # continuous scores: no ties
    expected = np.mean([_ap11_from_sklearn(labels[:, k], logits[:, k]) for k in range(c)]) * 100
    assert task.score("map_11point", labels, logits) == pytest.approx(expected, abs=1e-9)


def test_map_11point_rejects_single_label_input():
    with pytest.raises(UsageError):
        task.score("map_11point", np.array([0, 1, 1]), np.zeros((3, 2)))


def test_unknown_metric_is_usage_error():
    with pytest.raises(UsageError) as err:
        task.score("top5", np.array([0]), np.zeros((1, 2)))
    assert "top5" in str(err.value) and "accuracy" in str(err.value)


def test_map_11point_counts_recall_exactly_at_threshold():
    # 10 positives, ranked: T T T F F F F T T T T T T T (first three hits, four misses, then the remaining seven hits).
    truth = np.array([1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1])
    scores = -np.arange(len(truth), dtype=float)
    # After rank 3: recall 3/10 = 0.3 exactly, precision 1. For thresholds 0, .1, .2, .3 (4) the best precision is 1.
    # Thresholds .4 ... 1.0 (7): points after rank 7; the best is at the end, recall 1, precision 10/14.
    # AP = (4 * 1 + 7 * 10/14) / 11 = (4 + 5) / 11 = 9/11. Computing t as 3 * 0.1 = 0.30000000000000004 would drop the
    # recall-0.3 point at t = .3 and give (3 + 8 * 10/14) / 11 instead.
    assert task.average_precision_11point(truth, scores) == pytest.approx(9 / 11)


def test_cler_text_is_the_mean_of_cler_and_zeroshot_logits_not_a_renormalised_sum():
    from genbench.metrics.cler import cler_text_logits

    # Class 0: centroid and text agree; class 1: they disagree, so |c1 + t1| is small and re-normalising the sum
    # (an earlier definition) would inflate class 1's logit past class 0's.
    a = np.deg2rad([0.0, 40.0, 100.0])
    c = np.array([[1.0, 0.0], [np.cos(a[2]), np.sin(a[2])]], dtype=np.float32)
    t = np.array([[1.0, 0.0], [np.cos(-a[2] + a[1]), np.sin(-a[2] + a[1])]], dtype=np.float32)
    test = np.array([[np.cos(a[1] / 2), np.sin(a[1] / 2)]], dtype=np.float32)
    logits = cler_text_logits(test, c, t)
    np.testing.assert_allclose(logits, (test @ c.T + test @ t.T) / 2, rtol=1e-6)
    summed = c + t
    renormalised = test @ (summed / np.linalg.norm(summed, axis=1, keepdims=True)).T
    assert logits.argmax() == 0 and renormalised.argmax() == 1


@pytest.mark.parametrize("metric", ["accuracy", "mean_per_class_recall", "map_11point", "roc_auc"])
def test_a_linear_classifier_scores_the_same_in_blocks_as_with_whole_logits(metric):
    """score_linear never builds the (N, C) logits for argmax metrics (20,000 rows: three blocks); the predictions may
    differ from numpy's on an exact tie only, so the scores agree to a few samples."""
    rng = np.random.default_rng(0)
    classes = 2 if metric == "roc_auc" else 30
    x = rng.standard_normal((20000, 16)).astype(np.float32)
    w = rng.standard_normal((classes, 16)).astype(np.float32)
    labels = (rng.random((20000, classes)) < 0.2).astype(int) if metric == "map_11point" else rng.integers(0, classes, 20000)
    assert task.score_linear(metric, labels, x, w) == pytest.approx(task.score(metric, labels, x @ w.T), abs=0.015)
