"""A tqdm progress bar for the training loop."""

from __future__ import annotations

from collections.abc import Mapping

from tqdm import tqdm


def progress_bar(total: int, initial: int = 0, *, enabled: bool = True) -> tqdm:
    """Returns a bar over ``total`` steps that starts at ``initial`` (a resumed run).

    Args:
      total: the number of training steps.
      initial: steps already done.
      enabled: ``False`` hides the bar. When ``True`` it is still hidden if stderr is not a terminal
        (CI logs, ``nohup``), so logs are not flooded with carriage returns.
    """
    return tqdm(
        total=total,
        initial=initial,
        unit="step",
        dynamic_ncols=True,
        disable=None if enabled else True,
    )


def show_metrics(bar: tqdm, metrics: Mapping[str, float], steps_per_sec: float) -> None:
    """Shows the latest logged loss and the measured steps/s next to the bar."""
    bar.set_postfix(loss=f"{metrics['loss']:.4g}", steps_per_sec=f"{steps_per_sec:.3g}")
