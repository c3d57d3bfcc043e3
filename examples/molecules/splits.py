"""Scaffold split of a molecule set, as OGB made the ``ogbg-mol*`` splits.

OGB took the deterministic scaffold split of Hu et al. (2020, "Strategies for Pre-training Graph
Neural Networks", ``chem/splitters.py``), itself from DeepChem:

1. each molecule's Bemis-Murcko scaffold, as RDKit's
   ``MurckoScaffoldSmiles(smiles, includeChirality=True)``;
2. molecules grouped by scaffold, each group's indices sorted, groups ordered by
   ``(size, first index)`` descending (largest first, ties: later first index first);
3. groups filled in that order: into train while train stays within ``0.8 * n``, else into valid
   while train + valid stay within ``0.9 * n``, else into test.

Molecules that current RDKit refuses to sanitise (e.g. the hypervalent ``[AlH3](O)(O)O`` of tox21)
had scaffolds when OGB made the split with an older RDKit. :func:`murcko_scaffold` still gives them
one: it re-parses without the valence check (partial sanitisation) and builds the scaffold the same
way. So the split is computed over every row of the file, and its sizes are OGB's (tox21
6264/783/784, HIV 32901/4113/4113); molecules we cannot featurise are dropped afterwards, per part
(see :meth:`ScaffoldSplit.drop`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence

import numpy as np
from rdkit import Chem, rdBase

SPLIT_NAMES = ("train", "valid", "test")

_PARTIAL_SANITIZE = Chem.SanitizeFlags.SANITIZE_ALL ^ Chem.SanitizeFlags.SANITIZE_PROPERTIES


@dataclasses.dataclass(frozen=True)
class ScaffoldSplit:
    """Indices of the train, valid and test parts (sorted within each part in fill order).

    Attributes:
      train, valid, test: ``int64`` indices into the list the split was made from.
    """

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    @property
    def sizes(self) -> tuple[int, int, int]:
        """``(len(train), len(valid), len(test))``."""
        return len(self.train), len(self.valid), len(self.test)

    def as_dict(self) -> dict[str, np.ndarray]:
        """``{"train": ..., "valid": ..., "test": ...}``."""
        return {name: getattr(self, name) for name in SPLIT_NAMES}

    def drop(self, dropped: Sequence[int] | np.ndarray, num_items: int) -> ScaffoldSplit:
        """Removes ``dropped`` items and renumbers the rest ``0..num_items-len(dropped)-1``.

        Args:
          dropped: indices (into the original list of ``num_items``) of items to remove, e.g.
            molecules RDKit cannot featurise.
          num_items: the length of the original list.

        Returns:
          The split over the kept items, indexed by their position among the kept items.
        """
        keep = np.ones(num_items, bool)
        keep[np.asarray(dropped, np.int64)] = False
        new_index = np.cumsum(keep) - 1
        parts = {k: new_index[v[keep[v]]] for k, v in self.as_dict().items()}
        return ScaffoldSplit(**parts)

    def dropped_per_part(self, dropped: Sequence[int] | np.ndarray) -> dict[str, int]:
        """How many of ``dropped`` fall into each part, e.g. ``{"train": 7, "valid": 0, "test": 1}``."""
        dropped = np.asarray(dropped, np.int64)
        return {k: int(np.isin(v, dropped).sum()) for k, v in self.as_dict().items()}


def scaffold_of_mol(mol: Chem.Mol, *, include_chirality: bool = True, strict: bool = True) -> str:
    """Returns the Bemis-Murcko scaffold SMILES of a molecule (``""`` for an acyclic one).

    The same steps as RDKit's ``MurckoScaffold.MurckoScaffoldSmiles(mol=mol,
    includeChirality=include_chirality)``; ``strict=False`` skips the valence check, for molecules
    that only parse with partial sanitisation.
    """
    scaffold = Chem.MurckoDecompose(mol)
    scaffold.ClearComputedProps()
    scaffold.UpdatePropertyCache(strict=strict)
    Chem.GetSymmSSSR(scaffold)
    return Chem.MolToSmiles(scaffold, isomericSmiles=include_chirality)


def parse_partially(smiles: str) -> Chem.Mol | None:
    """Parses ``smiles`` without RDKit's valence check; ``None`` if it is not SMILES at all.

    Sanitisation runs every step except the property (valence) check; if that still fails (e.g. a
    ring that cannot be kekulised) the unsanitised molecule is returned with its ring info.
    """
    blocker = rdBase.BlockLogs()  # noqa: F841 -- silences RDKit while it lives
    mol = Chem.MolFromSmiles(smiles, sanitize=False)
    if mol is None:
        return None
    try:
        Chem.SanitizeMol(mol, _PARTIAL_SANITIZE)
    except Exception:  # RDKit raises several exception types (Kekulize, AtomValence, ...)
        mol = Chem.MolFromSmiles(smiles, sanitize=False)
        mol.UpdatePropertyCache(strict=False)
        Chem.GetSymmSSSR(mol)
    return mol


def murcko_scaffold(smiles: str, *, include_chirality: bool = True) -> str:
    """Returns the scaffold key of a SMILES string, also for molecules RDKit refuses to sanitise.

    Fully sanitised molecules get exactly RDKit's ``MurckoScaffoldSmiles``. Others are parsed by
    :func:`parse_partially`; a string that does not parse at all gets the key
    ``"<unparsable>" + smiles``, a group of its own.

    Example:
      >>> murcko_scaffold("Cc1cc(Oc2nccc(CCC)c2)ccc1")  # RDKit's own docstring example
      'c1ccc(Oc2ccccn2)cc1'
      >>> murcko_scaffold("CC(=O)O[AlH3](O)O")  # hypervalent Al: current RDKit will not sanitise
      ''
    """
    blocker = rdBase.BlockLogs()  # noqa: F841
    mol = Chem.MolFromSmiles(smiles)
    if mol is not None:
        return scaffold_of_mol(mol, include_chirality=include_chirality)
    mol = parse_partially(smiles)
    if mol is None:
        return "<unparsable>" + smiles
    return scaffold_of_mol(mol, include_chirality=include_chirality, strict=False)


def split_by_groups(
    groups: Sequence[Hashable],
    frac_train: float = 0.8,
    frac_valid: float = 0.1,
    frac_test: float = 0.1,
) -> ScaffoldSplit:
    """Splits items by group key, largest groups first, into train, then valid, then test.

    Args:
      groups: one key per item (a scaffold SMILES); items with equal keys stay in one part.
      frac_train, frac_valid, frac_test: target fractions; they must sum to 1.

    Returns:
      A :class:`ScaffoldSplit` of item indices.

    Example:
      >>> split_by_groups(["a", "a", "b", "c", "a", "b", "d", "e", "f", "g"]).sizes
      (8, 1, 1)
    """
    if not np.isclose(frac_train + frac_valid + frac_test, 1.0):
        raise ValueError(
            f"frac_train + frac_valid + frac_test must be 1; got {frac_train} + {frac_valid} + "
            f"{frac_test}."
        )
    members: dict[Hashable, list[int]] = {}
    for i, key in enumerate(groups):
        members.setdefault(key, []).append(i)  # appended in order, so each list is sorted
    ordered = sorted(members.values(), key=lambda idx: (len(idx), idx[0]), reverse=True)
    n = len(groups)
    train_cutoff, valid_cutoff = frac_train * n, (frac_train + frac_valid) * n
    train: list[int] = []
    valid: list[int] = []
    test: list[int] = []
    for idx in ordered:
        if len(train) + len(idx) <= train_cutoff:
            train += idx
        elif len(train) + len(valid) + len(idx) <= valid_cutoff:
            valid += idx
        else:
            test += idx
    return ScaffoldSplit(*(np.asarray(part, np.int64) for part in (train, valid, test)))


def scaffold_split(
    smiles: Sequence[str],
    frac_train: float = 0.8,
    frac_valid: float = 0.1,
    frac_test: float = 0.1,
    *,
    include_chirality: bool = True,
) -> ScaffoldSplit:
    """OGB's scaffold split of a list of SMILES strings (see the module docstring).

    Args:
      smiles: the molecules, in dataset order (every row, parseable or not).
      frac_train, frac_valid, frac_test: target fractions (OGB: 0.8, 0.1, 0.1).
      include_chirality: keep stereo in the scaffold SMILES (OGB: ``True``).

    Returns:
      A :class:`ScaffoldSplit` of indices into ``smiles``.
    """
    keys = [murcko_scaffold(s, include_chirality=include_chirality) for s in smiles]
    return split_by_groups(keys, frac_train, frac_valid, frac_test)
