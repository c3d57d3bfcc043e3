"""Featurised molecule graphs in flat arrays, built once from a MoleculeNet file and cached on disk.

A :class:`GraphDataset` keeps all graphs concatenated (one row per atom / directed bond, with
per-graph counts), as OGB's own ``csv_mol_download`` files and jraph's ``GraphsTuple`` do, so a batch
is a few slices. :func:`load_moleculenet` featurises a file with RDKit on the first call (seconds
for tox21, minutes for MUV), computes OGB's scaffold split over all rows, drops the molecules RDKit
cannot parse, and saves the result with ``np.savez`` under ``resolve_cache_dir("molecules")``, keyed
by dataset name and :data:`~.features.FEATURE_VERSION`; later calls load that file.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rdkit import Chem, rdBase

from examples.common.data_dir import resolve_cache_dir

from . import features, moleculenet, splits

log = logging.getLogger(__name__)

_ARRAYS = (
    "node_feat",
    "edge_feat",
    "senders",
    "receivers",
    "n_node",
    "n_edge",
    "labels",
    "source_index",
    "skipped",
)


@dataclasses.dataclass(frozen=True, eq=False)
class GraphDataset:
    """Molecule graphs stored as concatenated arrays; graph ``g`` owns a contiguous slice of each.

    Attributes:
      name: the dataset key, e.g. ``"tox21"`` or ``"ogbg_molpcba"``.
      tasks: the task names (columns of ``labels``).
      node_feat: ``int32[total_nodes, 9]`` atom features (see :mod:`.features`).
      edge_feat: ``int32[total_edges, 3]`` bond features, one row per directed edge.
      senders, receivers: ``int32[total_edges]`` node indices local to each graph.
      n_node, n_edge: ``int32[num_graphs]`` nodes and directed edges per graph.
      labels: ``float32[num_graphs, num_tasks]``, ``NaN`` where missing.
      source_index: ``int64[num_graphs]`` the row of each graph in the source file.
      splits: part name (``"train"``, ``"valid"``, ``"test"``) to ``int64`` graph indices.
      skipped: ``int64`` source rows that were not featurised (SMILES RDKit cannot parse).
      info: provenance and statistics (source file, split sizes over all rows, dropped per part).
    """

    name: str
    tasks: tuple[str, ...]
    node_feat: np.ndarray
    edge_feat: np.ndarray
    senders: np.ndarray
    receivers: np.ndarray
    n_node: np.ndarray
    n_edge: np.ndarray
    labels: np.ndarray
    source_index: np.ndarray
    splits: Mapping[str, np.ndarray]
    skipped: np.ndarray
    info: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        g = len(self.n_node)
        checks = {
            "node_feat": (self.node_feat.shape, (int(self.n_node.sum()), 9)),
            "edge_feat": (self.edge_feat.shape, (int(self.n_edge.sum()), 3)),
            "senders": (self.senders.shape, (int(self.n_edge.sum()),)),
            "receivers": (self.receivers.shape, (int(self.n_edge.sum()),)),
            "labels": (self.labels.shape[:1], (g,)),
            "source_index": (self.source_index.shape, (g,)),
        }
        for what, (got, want) in checks.items():
            if tuple(got) != want:
                raise ValueError(f"GraphDataset.{what} has shape {tuple(got)}; expected {want}.")
        for part, idx in self.splits.items():
            if len(idx) and (idx.min() < 0 or idx.max() >= g):
                raise ValueError(f"Split {part!r} has indices outside [0, {g}).")

    def __len__(self) -> int:
        return len(self.n_node)

    @property
    def num_tasks(self) -> int:
        return self.labels.shape[1]

    @functools.cached_property
    def node_offsets(self) -> np.ndarray:
        """``int64[num_graphs + 1]``: graph ``g``'s nodes are rows ``[off[g], off[g+1])``."""
        return np.concatenate([[0], np.cumsum(self.n_node, dtype=np.int64)])

    @functools.cached_property
    def edge_offsets(self) -> np.ndarray:
        """``int64[num_graphs + 1]``: graph ``g``'s edges are rows ``[off[g], off[g+1])``."""
        return np.concatenate([[0], np.cumsum(self.n_edge, dtype=np.int64)])

    def graph(self, g: int) -> features.MolGraph:
        """Returns graph ``g`` alone, in the format of :func:`~.features.smiles_to_graph`."""
        n0, n1 = self.node_offsets[g], self.node_offsets[g + 1]
        e0, e1 = self.edge_offsets[g], self.edge_offsets[g + 1]
        edge_index = np.stack([self.senders[e0:e1], self.receivers[e0:e1]])
        return features.MolGraph(self.node_feat[n0:n1], self.edge_feat[e0:e1], edge_index)

    def split(self, part: str) -> np.ndarray:
        """Graph indices of a part (``"train"``, ``"valid"``/``"validation"``, ``"test"``)."""
        key = "valid" if part == "validation" else part
        if key not in self.splits:
            raise ValueError(f"No split {part!r} in {self.name!r}; it has {sorted(self.splits)}.")
        return self.splits[key]


def stack_graphs(graphs: Sequence[features.MolGraph]) -> dict[str, np.ndarray]:
    """Concatenates graphs into the flat arrays of a :class:`GraphDataset` (local node indices)."""

    def cat(arrays, shape):
        return np.concatenate(arrays).astype(np.int32) if arrays else np.zeros(shape, np.int32)

    return {
        "node_feat": cat([g.node_feat for g in graphs], (0, 9)),
        "edge_feat": cat([g.edge_feat for g in graphs], (0, 3)),
        "senders": cat([g.edge_index[0] for g in graphs], (0,)),
        "receivers": cat([g.edge_index[1] for g in graphs], (0,)),
        "n_node": np.asarray([g.num_nodes for g in graphs], np.int32),
        "n_edge": np.asarray([g.num_edges for g in graphs], np.int32),
    }


def featurize_smiles(smiles: Sequence[str]) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    """Featurises SMILES strings and computes their scaffolds in one RDKit pass.

    Args:
      smiles: the molecules.

    Returns:
      ``(arrays, skipped, scaffolds)``: the :func:`stack_graphs` arrays of the parseable molecules,
      the ``int64`` indices of the others (skipped, never an error), and one scaffold key per input
      (also for skipped ones; see :func:`~.splits.murcko_scaffold`).
    """
    blocker = rdBase.BlockLogs()  # noqa: F841 -- RDKit's parse errors are counted, not printed
    graphs, skipped, scaffolds = [], [], []
    for i, s in enumerate(smiles):
        mol = Chem.MolFromSmiles(s)
        if mol is None:
            skipped.append(i)
            scaffolds.append(splits.murcko_scaffold(s))
            continue
        graphs.append(features.mol_to_graph(mol))
        scaffolds.append(splits.scaffold_of_mol(mol))
    return stack_graphs(graphs), np.asarray(skipped, np.int64), scaffolds


def build_moleculenet_dataset(table: moleculenet.MoleculeTable) -> GraphDataset:
    """Featurises a :class:`~.moleculenet.MoleculeTable` and attaches OGB's scaffold split.

    The split is made over all rows (so its sizes are OGB's), then the rows RDKit cannot parse are
    removed from the part they fell in; ``info`` records both, and the removal is logged.
    """
    start = time.perf_counter()
    arrays, skipped, scaffolds = featurize_smiles(table.smiles)
    split_all = splits.split_by_groups(scaffolds)
    kept = np.setdiff1d(np.arange(len(table), dtype=np.int64), skipped)
    split = split_all.drop(skipped, len(table))
    dropped = split_all.dropped_per_part(skipped)
    seconds = time.perf_counter() - start
    if len(skipped):
        log.warning(
            "%s: skipped %d of %d SMILES that RDKit cannot parse (rows %s); dropped per part %s.",
            table.name, len(skipped), len(table), skipped[:20].tolist(), dropped,
        )  # fmt: skip
    info = {
        "source": str(table.path),
        "num_rows": len(table),
        "feature_version": features.FEATURE_VERSION,
        "split_sizes_all_rows": list(split_all.sizes),
        "split_sizes": list(split.sizes),
        "dropped_per_part": dropped,
        "featurize_seconds": round(seconds, 3),
    }
    log.info(
        "%s: featurised %d molecules in %.1f s; split %s.",
        table.name,
        len(kept),
        seconds,
        split.sizes,
    )
    return GraphDataset(
        name=table.name,
        tasks=table.tasks,
        labels=table.labels[kept],
        source_index=kept,
        splits=split.as_dict(),
        skipped=skipped,
        info=info,
        **arrays,
    )


def save_dataset(dataset: GraphDataset, path: str | os.PathLike) -> None:
    """Writes ``dataset`` to ``path`` with ``np.savez`` (atomically: a temporary file, then a rename)."""
    path = Path(path)
    payload = {k: getattr(dataset, k) for k in _ARRAYS}
    payload.update({f"split_{k}": v for k, v in dataset.splits.items()})
    meta = {"name": dataset.name, "tasks": list(dataset.tasks), "info": dict(dataset.info)}
    payload["meta"] = np.asarray(json.dumps(meta))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **payload)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache may be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_dataset_file(path: str | os.PathLike) -> GraphDataset:
    """Reads a file written by :func:`save_dataset`."""
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f["meta"]))
        arrays = {k: f[k] for k in _ARRAYS}
        parts = {k.removeprefix("split_"): f[k] for k in f.files if k.startswith("split_")}
    return GraphDataset(
        name=meta["name"], tasks=tuple(meta["tasks"]), splits=parts, info=meta["info"], **arrays
    )


def read_cache(path: str | os.PathLike) -> GraphDataset | None:
    """Returns the cached dataset at ``path``, or ``None`` if there is none or it is unreadable."""
    path = Path(path)
    if not path.exists():
        return None
    start = time.perf_counter()
    try:
        dataset = load_dataset_file(path)
    except (OSError, ValueError, KeyError) as e:  # truncated file, older layout, ...
        log.warning("Ignoring unreadable cache %s (%s); featurising again.", path, e)
        return None
    log.info("Loaded %s in %.2f s.", path, time.perf_counter() - start)
    return dataset


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cache_path(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache file of dataset ``name``: ``<cache_dir>/<name>-<FEATURE_VERSION>.npz``."""
    folder = Path(cache_dir) if cache_dir is not None else resolve_cache_dir("molecules")
    return folder / f"{name}-{features.FEATURE_VERSION}.npz"


def load_moleculenet(
    name: str = "tox21",
    data_dir: str | os.PathLike | None = None,
    *,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> GraphDataset:
    """Loads a MoleculeNet dataset as featurised graphs with OGB's scaffold split.

    Args:
      name: a key of :data:`~.moleculenet.DATASETS` (``tox21`` by default).
      data_dir: the data root holding ``moleculenet/``; ``None`` uses ``$EQAGG_DATA_DIR``.
      cache: read the cached featurisation if it exists and matches the source file's sha256, and
        write it after featurising.
      cache_dir: where the cache lives; ``None`` uses ``resolve_cache_dir("molecules")``.

    Returns:
      A :class:`GraphDataset` with ``splits`` ``train``/``valid``/``test``.

    Example:
      >>> ds = load_moleculenet("tox21")  # doctest: +SKIP
      >>> {k: len(v) for k, v in ds.splits.items()}, ds.info["split_sizes_all_rows"]  # doctest: +SKIP
      ({'train': 6257, 'valid': 783, 'test': 783}, [6264, 783, 784])
    """
    spec = moleculenet.get_spec(name)
    source = moleculenet.find_csv(spec.name, data_dir)
    digest = _sha256(source)
    path = cache_path(spec.name, cache_dir)
    if cache:
        cached = read_cache(path)
        if cached is not None and cached.info.get("source_sha256") == digest:
            return cached
        if cached is not None:
            log.info("%s: cache %s is for another version of the file; rebuilding.", name, path)
    dataset = build_moleculenet_dataset(moleculenet.read_table(source, spec))
    dataset = dataclasses.replace(dataset, info={**dataset.info, "source_sha256": digest})
    if cache:
        save_dataset(dataset, path)
    return dataset
