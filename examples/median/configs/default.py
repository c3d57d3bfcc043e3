"""Default configuration: four aggregators x two embedding sizes in under 10 minutes on 2 CPU cores.

The paper's task and models (sets of 100 numbers, sum / 4-head attention / EA with 5 unrolled inner
steps / EA with implicit differentiation, the same output network) at a CPU scale: narrow networks,
small batches, 400 steps per run and two embedding sizes (each extra size adds ~4 minutes on a
shared 2-core machine, most of it compiling the EA models and running the implicit one's inner
solves). The paper trains for 10 million steps; see ``full.py`` for a GPU-sized run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of :func:`examples.median.train.train_and_evaluate`.

    Attributes:
      aggregators: which of ``"sum"``, ``"attention"``, ``"ea"``, ``"ea_implicit"`` to train.
      embedding_sizes: the swept set-embedding sizes ``D`` (multiples of ``num_heads``); one run per
        (aggregator, size) in ``<workdir>/runs/<aggregator>_d<size>``.
      set_size: numbers per set (100 in the paper).
      embed_width, embed_blocks: the element-embedding ResNet of sum and attention.
      output_width, output_blocks: the output ResNet shared by all aggregators.
      num_heads: attention heads (4 in the paper).
      potential_hidden: hidden widths of EA's ResNet potential.
      ea_steps: inner steps of ``"ea"`` (5 in the paper).
      implicit_max_steps, implicit_tol: cap and tolerance of ``"ea_implicit"``'s inner solve.
      implicit_step_size, implicit_momentum: its fixed inner Nesterov step size and momentum
        (implicit gradients do not reach them, so they cannot be learned). The paper found this
        the hard part (Appendix C.5), and so did we: the energy's curvature in ``y`` grows during
        training, and with the unrolled model's step 0.01 / momentum 0.5 the solve soon diverges
        (mean residual 10-100, no set converged). A small step with heavy momentum (0.002, 0.9)
        stays stable and converges in ~100-200 steps on most sets.
      implicit_regularizer: initial ``lambda`` of ``"ea_implicit"``'s prior ``lambda ||y||^2``.
      implicit_ridge: ``ridge * I`` added to the Hessian in its backward linear solve.
      aux_weight: weight of the unrolled EA's auxiliary loss (eq. 5), the mean squared norm of the
        energy's gradient over the inner steps. It is ~10 at initialisation and ~0.5 after a few
        hundred steps, against an MSE of ~0.01-0.001, so 1e-3 nudges the inner solve towards
        stationary points without swamping the regression.
      implicit_aux_weight: the same for ``"ea_implicit"``, where the loss is the squared residual
        at the solution (~1e-4 once converged), hence a larger weight.
      batch_size: sets per training step.
      learning_rate: Adam's initial step size, decayed along a cosine to 10% of it by the last step.
      grad_clip_norm: gradients are clipped to this global norm before Adam.
      num_train_steps, log_every, eval_every, checkpoint_every, seed, max_checkpoints_to_keep,
        progress_bar: the shared training loop's settings (``examples.common.TrainConfig``).
      num_eval_sets: size of the fixed held-out evaluation set (drawn from its own stream of
        ``seed``).
      eval_batch_size: sets per forward pass during evaluation (divides ``num_eval_sets``).
    """

    aggregators: Sequence[str] = ("sum", "attention", "ea", "ea_implicit")
    embedding_sizes: Sequence[int] = (4, 16)
    set_size: int = 100
    embed_width: int = 32
    embed_blocks: int = 2
    output_width: int = 32
    output_blocks: int = 2
    num_heads: int = 4
    potential_hidden: Sequence[int] = (32, 32)
    ea_steps: int = 5
    implicit_max_steps: int = 200
    implicit_tol: float = 1e-3
    implicit_step_size: float = 0.002
    implicit_momentum: float = 0.9
    implicit_regularizer: float = 1.0
    implicit_ridge: float = 0.0
    aux_weight: float = 1e-3
    implicit_aux_weight: float = 1e-2
    batch_size: int = 8
    learning_rate: float = 3e-3
    grad_clip_norm: float = 1.0
    num_train_steps: int = 400
    log_every: int = 50
    eval_every: int = 400
    checkpoint_every: int = 200
    seed: int = 0
    max_checkpoints_to_keep: int = 1
    progress_bar: bool = True
    num_eval_sets: int = 1000
    eval_batch_size: int = 500


def get_config() -> Config:
    """Returns the default (2-core CPU) configuration."""
    return Config()
