"""Trains OGB's GCN/GIN with a chosen readout on a molecule dataset; a grid of runs -> results.md.

Examples::

    # one run of the CPU configuration (tox21, GIN, sum readout, seed 0)
    python -m examples.molecules.main --workdir /tmp/mol
    # the README's sweep: GCN and GIN x {sum, EA} x 3 seeds, then results.md
    python -m examples.molecules.main --workdir /tmp/mol --model gcn,gin --readout sum,ea \\
        --seeds 0,1,2
    # the paper's MOLPCBA setting on a GPU (needs the TFDS ogbg_molpcba data)
    python -m examples.molecules.main --workdir /tmp/pcba --config molpcba --readout ea
"""

from __future__ import annotations

import argparse
import dataclasses
import logging

import jax

from examples.common.data_dir import resolve_cache_dir

from . import configs, sweep


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="where runs and results.md are written")
    parser.add_argument("--config", default="default", choices=configs.NAMES)
    parser.add_argument("--dataset", help="override the config's dataset, e.g. tox21, hiv")
    parser.add_argument("--data_dir", help="data root (default: $EQAGG_DATA_DIR)")
    parser.add_argument("--model", help="comma-separated: gcn, gin (default: the config's)")
    parser.add_argument(
        "--readout", help="comma-separated: sum, mean, attention, pna, ea (default: the config's)"
    )
    parser.add_argument("--local_aggregation", choices=("sum", "ea"), help="of edge messages")
    parser.add_argument(
        "--seeds", default=None, help="comma-separated ints (default: the config's)"
    )
    parser.add_argument("--num_train_steps", type=int, help="override the config's")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # force: importing jax (absl) has already put a handler on the root logger
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", force=True)
    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every save at INFO
    # Runs of one grid differ only in their seed: reuse their compiled steps across processes.
    jax.config.update("jax_compilation_cache_dir", str(resolve_cache_dir("jax")))
    config = configs.get_config(args.config)
    overrides = {
        k: getattr(args, k)
        for k in ("dataset", "data_dir", "local_aggregation", "num_train_steps")
        if getattr(args, k) is not None
    }
    config = dataclasses.replace(config, **overrides)
    sweep.run_sweep(
        config,
        args.workdir,
        models=_names(args.model) if args.model else [config.model],
        readouts=_names(args.readout) if args.readout else [config.readout],
        seeds=[int(s) for s in _names(args.seeds)] if args.seeds else [config.seed],
    )


if __name__ == "__main__":
    main()
