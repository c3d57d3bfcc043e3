"""OGB's graph-property evaluator for the molecule datasets, in NumPy.

OGB (``ogb/graphproppred/evaluate.py``) scores each task on its labelled examples only (``NaN``
labels are missing), skips tasks that lack a positive or a negative example, and averages over the
remaining tasks: ROC-AUC for tox21, toxcast, HIV, sider, clintox, BBBP and bace; average precision
(AP) for pcba and MUV. :func:`roc_auc_score` and :func:`average_precision_score` equal scikit-learn's
functions of the same names (the latter is the step-wise sum :math:`\\sum_k (R_k - R_{k-1}) P_k`
over distinct score thresholds, without interpolation).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from jax.typing import ArrayLike

METRIC_OF_DATASET = {
    "tox21": "rocauc", "toxcast": "rocauc", "hiv": "rocauc", "sider": "rocauc",
    "clintox": "rocauc", "bbbp": "rocauc", "bace": "rocauc", "muv": "ap", "pcba": "ap",
}  # fmt: skip
"""The metric OGB reports for each ``ogbg-mol*`` dataset."""


def metric_for_dataset(name: str) -> str:
    """Returns ``"rocauc"`` or ``"ap"`` for a dataset name (``tox21``, ``ogbg-molpcba``, ``ogbg_molpcba``)."""
    key = name.lower().removeprefix("ogbg-mol").removeprefix("ogbg_mol")
    if key not in METRIC_OF_DATASET:
        raise ValueError(
            f"No OGB metric known for dataset {name!r}; known: {sorted(METRIC_OF_DATASET)}."
        )
    return METRIC_OF_DATASET[key]


def _check_binary(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_score = np.asarray(y_true).ravel(), np.asarray(y_score, np.float64).ravel()
    if y_true.shape != y_score.shape:
        raise ValueError(
            f"y_true has {y_true.size} entries but y_score {y_score.size}; pass one score per label."
        )
    if not np.all((y_true == 0) | (y_true == 1)):
        raise ValueError("y_true must hold only 0 and 1 here; mask missing labels (NaN) out first.")
    if not np.all(np.isfinite(y_score)):
        raise ValueError("y_score has NaN or inf entries; the model's predictions diverged.")
    if y_true.all() or not y_true.any():
        raise ValueError("The metric needs at least one positive and one negative example.")
    return y_true.astype(bool), y_score


def roc_auc_score(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Area under the ROC curve of one binary task (ties between scores count one half).

    Computed as the Mann-Whitney statistic: with average ranks :math:`r_i` of the scores,
    :math:`\\mathrm{AUC} = (\\sum_{i \\in +} r_i - P(P+1)/2) / (P N)`, which equals the trapezoidal
    area under scikit-learn's ROC curve.

    Example:
      >>> roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
      0.75
    """
    y_true, y_score = _check_binary(y_true, y_score)
    order = np.argsort(y_score, kind="stable")
    sorted_scores = y_score[order]
    first = np.r_[True, sorted_scores[1:] != sorted_scores[:-1]]
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], len(sorted_scores)]
    mean_rank = (starts + 1 + ends) / 2.0  # 1-based ranks starts+1..ends share their mean
    ranks = np.empty(len(y_score))
    ranks[order] = mean_rank[np.cumsum(first) - 1]
    n_pos = int(y_true.sum())
    n_neg = len(y_true) - n_pos
    return float((ranks[y_true].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision_score(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Average precision of one binary task, as scikit-learn's ``average_precision_score``.

    :math:`\\mathrm{AP} = \\sum_k (R_k - R_{k-1}) P_k` over the distinct scores in decreasing
    order, where :math:`P_k` and :math:`R_k` are the precision and recall of predicting positive
    every example scored at least the :math:`k`-th threshold, and :math:`R_0 = 0`.

    Example:
      >>> average_precision_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])  # (1/2)*1 + (1/2)*(2/3)
      0.8333333333333333
    """
    y_true, y_score = _check_binary(y_true, y_score)
    order = np.argsort(-y_score, kind="stable")
    sorted_scores, hits = y_score[order], y_true[order]
    last_of_threshold = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]
    true_pos = np.cumsum(hits)[last_of_threshold]
    predicted_pos = np.flatnonzero(last_of_threshold) + 1
    precision = true_pos / predicted_pos
    recall = true_pos / true_pos[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


_METRIC_FNS = {"rocauc": roc_auc_score, "ap": average_precision_score}


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """The result of :func:`evaluate`.

    Attributes:
      metric: ``"rocauc"`` or ``"ap"``.
      value: the mean of ``per_task`` over the scored tasks (OGB's number).
      per_task: ``float64[num_tasks]``, ``NaN`` for tasks that were not scored.
      scored: ``bool[num_tasks]``, tasks with at least one positive and one negative label.
    """

    metric: str
    value: float
    per_task: np.ndarray
    scored: np.ndarray

    def as_dict(self) -> dict[str, float]:
        """``{metric: value}``, the dict OGB's ``Evaluator.eval`` returns."""
        return {self.metric: self.value}


def evaluate(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    metric: str = "rocauc",
    *,
    mask: ArrayLike | None = None,
) -> Evaluation:
    """Scores multi-task binary predictions as OGB's ``Evaluator`` does.

    Args:
      y_true: ``[num_graphs, num_tasks]`` labels in {0, 1}; ``NaN`` marks a missing label.
      y_pred: ``[num_graphs, num_tasks]`` scores (logits or probabilities: only their order counts).
      metric: ``"rocauc"`` or ``"ap"`` (see :func:`metric_for_dataset`).
      mask: optional ``bool[num_graphs, num_tasks]`` (or ``[num_graphs]``); ``False`` entries count
        as missing, e.g. padding graphs of a batch.

    Returns:
      An :class:`Evaluation`; ``value`` averages the tasks that have both classes among their
      labelled examples.

    Raises:
      ValueError: on mismatched shapes, an unknown metric, labels other than 0/1/NaN, non-finite
        scores on labelled entries, or when no task can be scored.

    Example:
      >>> nan = float("nan")
      >>> y_true = [[0, 1, 0], [1, nan, 0], [1, 0, 0], [0, 1, 0]]
      >>> y_pred = [[0.2, 0.9, 0.5], [0.7, 0.1, 0.5], [0.6, 0.3, 0.1], [0.1, 0.8, 0.3]]
      >>> evaluate(y_true, y_pred).as_dict()  # task 3 has no positive: skipped
      {'rocauc': 1.0}
    """
    if metric not in _METRIC_FNS:
        raise ValueError(f"metric must be one of {sorted(_METRIC_FNS)}; got {metric!r}.")
    y_true = np.asarray(y_true, np.float64)
    y_pred = np.asarray(y_pred, np.float64)
    if y_true.ndim != 2 or y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true and y_pred must both be [num_graphs, num_tasks]; got {y_true.shape} and "
            f"{y_pred.shape}."
        )
    labelled = ~np.isnan(y_true)
    if mask is not None:
        mask = np.asarray(mask, bool)
        labelled &= mask[:, None] if mask.ndim == 1 else mask
    per_task = np.full(y_true.shape[1], np.nan)
    for t in range(y_true.shape[1]):
        labels = y_true[labelled[:, t], t]
        if (labels == 1).any() and (labels == 0).any():
            try:
                per_task[t] = _METRIC_FNS[metric](labels, y_pred[labelled[:, t], t])
            except ValueError as e:
                raise ValueError(f"Task {t}: {e}") from e
    scored = ~np.isnan(per_task)
    if not scored.any():
        raise ValueError(
            f"No task has both a positive and a negative labelled example, so {metric} is undefined; "
            "evaluate on a larger set of graphs."
        )
    return Evaluation(metric, float(per_task[scored].mean()), per_task, scored)
