"""ogbg-molpcba from TensorFlow Datasets (``tfds.data_source``), as a :class:`~.dataset.GraphDataset`.

The TFDS builder ``ogbg_molpcba`` repackages OGB's ``pcba.zip``: 437,929 molecules with the same 9
atom and 3 bond features as :mod:`.features`, 128 binary tasks (``NaN`` = missing) and OGB's scaffold
split (train/validation/test). Its records store each bond once (``edge_index`` ``[num_bonds, 2]``, as
OGB's raw CSVs do); :func:`record_to_graph` adds the reverse edges in the order of OGB's
``smiles2graph`` (``i -> j`` then ``j -> i`` per bond), so graphs from either source are identical.

Random access needs the dataset prepared in a random-access format, once, with network access::

    tfds build ogbg_molpcba --file_format=array_record [--data_dir DIR]

(the builder reads ``pcba.zip`` with pandas). Nothing here downloads.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from . import dataset as dataset_lib
from . import features

log = logging.getLogger(__name__)

TFDS_NAME = "ogbg_molpcba"
TFDS_SPLITS = {"train": "train", "valid": "validation", "test": "test"}
"""Our part names to TFDS split names."""


def record_to_graph(
    record: Mapping[str, Any], *, add_reverse_edges: bool = True
) -> features.MolGraph:
    """Converts one ``ogbg_molpcba`` record into a :class:`~.features.MolGraph`.

    Args:
      record: a dict with ``node_feat`` ``[n, 9]``, ``edge_feat`` ``[e, 3]``, ``edge_index``
        ``[e, 2]`` (one row per bond) and optionally ``num_nodes``.
      add_reverse_edges: add ``j -> i`` after each ``i -> j`` (OGB does, as ``add_inverse_edge``).

    Raises:
      ValueError: if the arrays disagree in shape, or a feature is outside its embedding table.
    """
    node_feat = np.asarray(record["node_feat"]).astype(np.int32).reshape(-1, 9)
    edge_feat = np.asarray(record["edge_feat"]).astype(np.int32).reshape(-1, 3)
    edge_index = np.asarray(record["edge_index"]).astype(np.int32).reshape(-1, 2)
    if "num_nodes" in record and int(np.sum(record["num_nodes"])) != len(node_feat):
        raise ValueError(
            f"record num_nodes={np.asarray(record['num_nodes']).tolist()} but node_feat has "
            f"{len(node_feat)} rows; the record is corrupt."
        )
    if len(edge_index) != len(edge_feat):
        raise ValueError(
            f"record edge_index has {len(edge_index)} rows but edge_feat {len(edge_feat)}."
        )
    features.check_feature_ranges(node_feat, edge_feat)
    if add_reverse_edges:
        senders = np.stack([edge_index[:, 0], edge_index[:, 1]], axis=1).reshape(-1)
        receivers = np.stack([edge_index[:, 1], edge_index[:, 0]], axis=1).reshape(-1)
        edge_feat = np.repeat(edge_feat, 2, axis=0)
    else:
        senders, receivers = edge_index[:, 0], edge_index[:, 1]
    return features.MolGraph(node_feat, edge_feat, np.stack([senders, receivers]))


def _default_data_source(name: str, *, split: str, data_dir: str | None) -> Sequence[Mapping]:
    import tensorflow_datasets as tfds  # lazy: only this path needs it

    return tfds.data_source(name, split=split, data_dir=data_dir, download=False)


def _task_names(source: Any, num_tasks: int) -> tuple[str, ...]:
    """The PubChem assay names from the TFDS metadata, else ``task_0``, ``task_1``, ..."""
    metadata = getattr(getattr(source, "dataset_info", None), "metadata", None) or {}
    tasks = tuple(metadata.get("tasks", ()))
    return tasks if len(tasks) == num_tasks else tuple(f"task_{k}" for k in range(num_tasks))


def _open_sources(data_source_fn, tfds_data_dir) -> dict[str, Sequence[Mapping]]:
    sources = {}
    for part, tfds_split in TFDS_SPLITS.items():
        try:
            sources[part] = data_source_fn(TFDS_NAME, split=tfds_split, data_dir=tfds_data_dir)
        except Exception as e:  # TFDS raises several types for "not prepared (in this format)"
            raise RuntimeError(
                f"Cannot open the TFDS dataset {TFDS_NAME!r} (split {tfds_split!r}, data_dir "
                f"{tfds_data_dir!r}): {e}\nPrepare it once, with network access: `tfds build "
                f"{TFDS_NAME} --file_format=array_record` (add --data_dir DIR to choose where)."
            ) from e
    return sources


def load_ogbg_molpcba(
    tfds_data_dir: str | os.PathLike | None = None,
    *,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    data_source_fn: Callable[..., Sequence[Mapping]] | None = None,
) -> dataset_lib.GraphDataset:
    """Loads a prepared ``ogbg_molpcba`` through ``tfds.data_source`` as a graph dataset.

    The three TFDS splits are concatenated (train, then validation, then test) and become the
    ``train``/``valid``/``test`` parts. Converting every record takes minutes, so the result is
    cached like :func:`~.dataset.load_moleculenet` (``ogbg_molpcba-<FEATURE_VERSION>.npz``) and
    reused while the split sizes match.

    Args:
      tfds_data_dir: TFDS's data directory; ``None`` uses TFDS's default (``$TFDS_DATA_DIR`` or
        ``~/tensorflow_datasets``).
      cache: read/write the converted dataset in the cache.
      cache_dir: where the cache lives; ``None`` uses ``resolve_cache_dir("molecules")``.
      data_source_fn: ``fn(name, *, split, data_dir) -> Sequence[record]``; defaults to
        ``tfds.data_source(..., download=False)``. Tests pass a fake.

    Returns:
      A :class:`~.dataset.GraphDataset` named ``"ogbg_molpcba"`` with 128 tasks.

    Raises:
      RuntimeError: if TFDS cannot open the dataset, with the command that prepares it.
    """
    data_dir = None if tfds_data_dir is None else os.fspath(tfds_data_dir)
    sources = _open_sources(data_source_fn or _default_data_source, data_dir)
    sizes = [len(sources[part]) for part in TFDS_SPLITS]
    path = dataset_lib.cache_path(TFDS_NAME, cache_dir)
    cached = dataset_lib.read_cache(path) if cache else None
    if cached is not None:
        if [len(cached.split(part)) for part in TFDS_SPLITS] == sizes:
            return cached
        log.info("%s: cache %s has other split sizes; rebuilding.", TFDS_NAME, path)

    start = time.perf_counter()
    graphs, labels, source_index = [], [], []
    for part in TFDS_SPLITS:
        source = sources[part]
        for i in range(len(source)):
            record = source[i]
            graphs.append(record_to_graph(record))
            labels.append(np.asarray(record["labels"], np.float32))
            source_index.append(i)
    offsets = np.cumsum([0, *sizes])
    splits = {part: np.arange(offsets[k], offsets[k + 1]) for k, part in enumerate(TFDS_SPLITS)}
    num_tasks = len(labels[0]) if labels else 128
    dataset = dataset_lib.GraphDataset(
        name=TFDS_NAME,
        tasks=_task_names(sources["train"], num_tasks),
        labels=np.stack(labels) if labels else np.zeros((0, num_tasks), np.float32),
        source_index=np.asarray(source_index, np.int64),
        splits=splits,
        skipped=np.zeros(0, np.int64),
        info={
            "source": f"tfds:{TFDS_NAME}",
            "source_index": "index within its TFDS split (TFDS order, not OGB order)",
            "feature_version": features.FEATURE_VERSION,
            "split_sizes": sizes,
            "split_sizes_all_rows": sizes,
            "featurize_seconds": round(time.perf_counter() - start, 3),
        },
        **dataset_lib.stack_graphs(graphs),
    )
    log.info(
        "%s: converted %d graphs in %.1f s.",
        TFDS_NAME,
        len(dataset),
        dataset.info["featurize_seconds"],
    )
    if cache:
        dataset_lib.save_dataset(dataset, path)
    return dataset
