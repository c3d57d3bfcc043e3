"""Side-by-side timing of PyTorch Geometric's ``EquilibriumAggregation`` (optional ``compare`` extra).

PyG's layer at the same shapes and potential widths (ResNet potential ``[x, y] -> hidden -> 1``,
LayerNorm, tanh, residual maps from the input; 5 unrolled momentum steps; segment layout), trained
with a linear head and an MSE loss. Differences in what is computed, all in PyG's favour or neutral:
PyG sums the potential's output without squaring it and takes heavy-ball rather than Nesterov steps.
"""

from __future__ import annotations

import statistics
import time

import numpy as np


def available() -> bool:
    try:
        import torch  # noqa: F401
        import torch_geometric  # noqa: F401
    except ImportError:
        return False
    return True


def time_train_step(
    x: np.ndarray,
    segment_ids: np.ndarray,
    num_sets: int,
    latent: int,
    hidden: list[int],
    steps: int,
    repeats: int = 10,
    warmup: int = 2,
    threads: int | None = None,
) -> dict[str, float]:
    """Median seconds of one forward + backward + optimizer step of PyG's EA on CPU."""
    import torch
    from torch_geometric.nn.aggr import EquilibriumAggregation

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    agg = EquilibriumAggregation(x.shape[1], latent, list(hidden), grad_iter=steps)
    head = torch.nn.Linear(latent, 1)
    params = list(agg.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    xt = torch.from_numpy(np.ascontiguousarray(x))
    idx = torch.from_numpy(segment_ids.astype(np.int64))
    target = torch.zeros(num_sets, 1)

    def step():
        opt.zero_grad()
        y = agg(xt, idx, dim_size=num_sets)
        loss = torch.nn.functional.mse_loss(head(y), target)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {
        "step_s": statistics.median(times),
        "step_min_s": min(times),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "params": sum(p.numel() for p in params),
    }
