"""MoleculeNet CSV files: SMILES strings and a label matrix with NaN for missing labels.

The files are those of MoleculeNet (Wu et al. 2018) as chemprop and DeepChem distribute them, read
from ``$EQAGG_DATA_DIR/moleculenet`` (``.csv`` or ``.csv.gz``, any letter case). Their column layouts
differ; :data:`DATASETS` names the SMILES column and the task columns of each, so both the chemprop
layout (``smiles`` first) and the original one (e.g. BBBP ``num,name,p_np,smiles``; bace
``mol,CID,Class,...``; tox21/muv with a trailing ``mol_id``) load the same tasks.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import os
from pathlib import Path

import numpy as np

from examples.common.data_dir import resolve_data_dir

_TOX21_TASKS = (
    "NR-AR", "NR-AR-LBD", "NR-AhR", "NR-Aromatase", "NR-ER", "NR-ER-LBD", "NR-PPAR-gamma",
    "SR-ARE", "SR-ATAD5", "SR-HSE", "SR-MMP", "SR-p53",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class MoleculeNetSpec:
    """Where a MoleculeNet dataset keeps its SMILES and tasks, and how OGB scores it.

    Attributes:
      name: our key (lower case), e.g. ``"tox21"``.
      file_stem: the file name without ``.csv``/``.csv.gz`` (matched case-insensitively).
      smiles_column: the header of the SMILES column.
      tasks: the task columns in order; ``None`` means every column except ``smiles_column`` and
        ``non_task_columns``.
      non_task_columns: columns that are not tasks (identifiers, raw assay values).
      metric: ``"rocauc"`` or ``"ap"``, as OGB's evaluator for the twin ``ogb_name``.
      ogb_name: the OGB dataset built from the same molecules.
    """

    name: str
    file_stem: str
    smiles_column: str
    tasks: tuple[str, ...] | None
    non_task_columns: tuple[str, ...] = ()
    metric: str = "rocauc"
    ogb_name: str = ""


DATASETS: dict[str, MoleculeNetSpec] = {
    spec.name: spec
    for spec in (
        MoleculeNetSpec("tox21", "tox21", "smiles", _TOX21_TASKS, ogb_name="ogbg-moltox21"),
        MoleculeNetSpec("toxcast", "toxcast", "smiles", None, ogb_name="ogbg-moltoxcast"),
        MoleculeNetSpec("hiv", "HIV", "smiles", ("HIV_active",), ogb_name="ogbg-molhiv"),
        MoleculeNetSpec("muv", "muv", "smiles", None, ("mol_id",), "ap", "ogbg-molmuv"),
        MoleculeNetSpec("sider", "sider", "smiles", None, ogb_name="ogbg-molsider"),
        MoleculeNetSpec(
            "clintox", "clintox", "smiles", ("FDA_APPROVED", "CT_TOX"), ogb_name="ogbg-molclintox"
        ),
        MoleculeNetSpec("bbbp", "BBBP", "smiles", ("p_np",), ogb_name="ogbg-molbbbp"),
        MoleculeNetSpec("bace", "bace", "mol", ("Class",), ogb_name="ogbg-molbace"),
    )
}
"""The MoleculeNet classification datasets that OGB turned into ``ogbg-mol*``."""


@dataclasses.dataclass(frozen=True)
class MoleculeTable:
    """The rows of one MoleculeNet file.

    Attributes:
      name: the dataset key (see :data:`DATASETS`).
      smiles: one SMILES string per row, in file order.
      labels: ``float32[num_rows, num_tasks]``; ``NaN`` where the label is missing.
      tasks: the task names (label columns).
      path: the file read.
    """

    name: str
    smiles: tuple[str, ...]
    labels: np.ndarray
    tasks: tuple[str, ...]
    path: Path

    def __len__(self) -> int:
        return len(self.smiles)


def get_spec(name: str) -> MoleculeNetSpec:
    """Returns the :class:`MoleculeNetSpec` of ``name`` (case-insensitive, ``ogbg-mol`` prefix ok)."""
    key = name.lower().removeprefix("ogbg-mol").removeprefix("ogbg_mol")
    if key not in DATASETS:
        raise ValueError(f"Unknown MoleculeNet dataset {name!r}; choose one of {sorted(DATASETS)}.")
    return DATASETS[key]


def find_csv(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Returns the path of the CSV file of dataset ``name`` in ``<data_dir>/moleculenet``.

    Args:
      name: a key of :data:`DATASETS`.
      data_dir: the data root; ``None`` uses ``$EQAGG_DATA_DIR`` (see ``resolve_data_dir``).

    Raises:
      FileNotFoundError: naming the folder and the file names looked for.
    """
    spec = get_spec(name)
    folder = resolve_data_dir(data_dir, subdir="moleculenet")
    wanted = [f"{spec.file_stem}.csv".lower(), f"{spec.file_stem}.csv.gz".lower()]
    by_name = {p.name.lower(): p for p in folder.iterdir()}
    for candidate in wanted:
        if candidate in by_name:
            return by_name[candidate]
    raise FileNotFoundError(
        f"No file for dataset {spec.name!r} in {str(folder)!r}: looked for {wanted} (any case). "
        "Download it from MoleculeNet (or chemprop's data) into that folder."
    )


def _parse_label(cell: str) -> float:
    cell = cell.strip()
    return float(cell) if cell else float("nan")


def read_table(path: str | os.PathLike, spec: MoleculeNetSpec) -> MoleculeTable:
    """Reads one MoleculeNet CSV (plain or gzip) laid out as ``spec`` says.

    Raises:
      ValueError: if a column named by ``spec`` is missing, or a label cell is not a number.
    """
    path = Path(path)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        text = io.TextIOWrapper(f, encoding="utf-8", newline="")
        rows = list(csv.reader(text))
    if not rows:
        raise ValueError(f"{str(path)!r} is empty; expected a header row and one row per molecule.")
    header, rows = rows[0], rows[1:]
    skip = {spec.smiles_column, *spec.non_task_columns}
    tasks = spec.tasks if spec.tasks is not None else tuple(c for c in header if c not in skip)
    missing = [c for c in (spec.smiles_column, *tasks) if c not in header]
    if missing:
        raise ValueError(
            f"{str(path)!r} lacks the column(s) {missing} of dataset {spec.name!r}; its header is "
            f"{header[:8]}{'...' if len(header) > 8 else ''}."
        )
    smiles_col = header.index(spec.smiles_column)
    task_cols = [header.index(t) for t in tasks]
    labels = np.empty((len(rows), len(tasks)), np.float32)
    for r, row in enumerate(rows):
        try:
            labels[r] = [_parse_label(row[c]) for c in task_cols]
        except (ValueError, IndexError) as e:
            raise ValueError(f"{str(path)!r} row {r + 2}: cannot read the labels ({e}).") from e
    smiles = tuple(row[smiles_col].strip() for row in rows)
    return MoleculeTable(spec.name, smiles, labels, tuple(tasks), path)


def load_moleculenet_csv(
    name: str = "tox21", data_dir: str | os.PathLike | None = None
) -> MoleculeTable:
    """Loads the SMILES and labels of a MoleculeNet dataset (no RDKit involved).

    Args:
      name: a key of :data:`DATASETS` (``tox21`` by default).
      data_dir: the data root holding ``moleculenet/``; ``None`` uses ``$EQAGG_DATA_DIR``.

    Returns:
      A :class:`MoleculeTable` with every row of the file.

    Example:
      >>> table = load_moleculenet_csv("tox21")  # doctest: +SKIP
      >>> len(table), table.labels.shape  # doctest: +SKIP
      (7831, (7831, 12))
    """
    spec = get_spec(name)
    return read_table(find_csv(spec.name, data_dir), spec)
