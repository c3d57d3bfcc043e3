"""Sets of numbers and their medians, generated on the fly (paper section 5.1, Appendix D.1).

Each set holds ``set_size`` numbers (100 in the paper) drawn from one of three distributions with
fixed parameters, chosen at random per set; its label is the set's median (``numpy.median`` of the
float32 numbers the model sees). The paper's parameters were lost in extraction, so this example
fixes its own (:data:`DISTRIBUTIONS`): all three have a spread of about 0.5 to 0.7 and population
medians in ``[0, 0.84]``, so their sets overlap in scale and location, and neither the range nor the
mean of a set gives its median away.

Every batch is a pure function of ``(seed, step)`` (``numpy.random.default_rng([seed, 0, step])``),
so a resumed run sees the same data; the held-out evaluation set is drawn once from the separate
stream ``default_rng([seed, 1])`` and never overlaps the training stream.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

Sampler = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Distribution:
    """A fixed distribution of set elements.

    Attributes:
      name: short name used in tables and metrics (``mse_<name>``).
      description: the parameters, for the README.
      sample: ``(rng, shape) -> float64 array``.
      median: the population median, for reference (the label is the *sample* median).
    """

    name: str
    description: str
    sample: Sampler
    median: float


DISTRIBUTIONS: tuple[Distribution, ...] = (
    Distribution(
        "uniform",
        "uniform on [-1, 1]",
        lambda rng, shape: rng.uniform(-1.0, 1.0, shape),
        0.0,
    ),
    Distribution(
        "gamma",
        "gamma, shape 2, scale 0.5 (mean 1)",
        lambda rng, shape: rng.gamma(2.0, 0.5, shape),
        0.8392,  # scipy.stats.gamma(2, scale=0.5).median()
    ),
    Distribution(
        "normal",
        "normal, mean 0.5, standard deviation 0.5",
        lambda rng, shape: rng.normal(0.5, 0.5, shape),
        0.5,
    ),
)
"""The three distributions of Appendix D.1, in the order of the ``kind`` labels 0, 1, 2."""

TRAIN_STREAM, EVAL_STREAM = 0, 1


def make_sets(rng: np.random.Generator, num_sets: int, set_size: int) -> dict[str, np.ndarray]:
    """Draws ``num_sets`` sets: a distribution per set, then ``set_size`` numbers from it.

    Args:
      rng: the generator (consumed).
      num_sets: number of sets ``B``.
      set_size: elements per set ``N``.

    Returns:
      ``{"x": float32 [B, N, 1], "y": float32 [B] (the median of each set), "kind": int32 [B] (the
      index of its distribution in DISTRIBUTIONS)}``.

    Raises:
      ValueError: if ``num_sets`` or ``set_size`` is not positive.
    """
    if num_sets < 1 or set_size < 1:
        raise ValueError(
            f"num_sets and set_size must be >= 1; got num_sets={num_sets}, set_size={set_size}."
        )
    kind = rng.integers(0, len(DISTRIBUTIONS), size=num_sets).astype(np.int32)
    x = np.empty((num_sets, set_size), np.float32)
    for k, dist in enumerate(DISTRIBUTIONS):
        rows = np.flatnonzero(kind == k)
        if rows.size:
            x[rows] = dist.sample(rng, (rows.size, set_size))
    # The median of the float32 numbers the model sees (not of their float64 originals).
    y = np.median(x, axis=1).astype(np.float32)
    return {"x": x[..., None], "y": y, "kind": kind}


def train_batch(seed: int, step: int, batch_size: int, set_size: int) -> dict[str, np.ndarray]:
    """The training batch of ``step``: a pure function of ``(seed, step)`` (see :func:`make_sets`).

    Example:
      >>> a = train_batch(seed=0, step=7, batch_size=4, set_size=100)
      >>> b = train_batch(seed=0, step=7, batch_size=4, set_size=100)
      >>> a["x"].shape, bool((a["x"] == b["x"]).all())
      ((4, 100, 1), True)
    """
    return make_sets(np.random.default_rng([seed, TRAIN_STREAM, step]), batch_size, set_size)


def eval_set(seed: int, num_sets: int, set_size: int) -> dict[str, np.ndarray]:
    """The fixed held-out evaluation sets (a stream the training batches never use)."""
    return make_sets(np.random.default_rng([seed, EVAL_STREAM]), num_sets, set_size)


def label_baselines(data: dict[str, np.ndarray]) -> dict[str, float]:
    """MSEs of trivial predictors on ``data``, to read the models' MSE against.

    ``constant``: the mean label (what a model that ignores its input can reach).
    ``population_median``: the population median of the set's distribution (a model that only
    recognises the distribution). ``sample_mean``: the mean of the set (a plain average pooling).
    """
    y, kind = data["y"].astype(np.float64), data["kind"]
    pop = np.array([d.median for d in DISTRIBUTIONS])[kind]
    mean = data["x"][..., 0].astype(np.float64).mean(axis=1)
    return {
        "constant": float(np.mean((y - y.mean()) ** 2)),
        "population_median": float(np.mean((y - pop) ** 2)),
        "sample_mean": float(np.mean((y - mean) ** 2)),
    }
