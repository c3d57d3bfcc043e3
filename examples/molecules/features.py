"""RDKit featurisation of molecules as OGB's ``smiles2graph`` does it (9 atom and 3 bond features).

Every feature is a categorical index into one of OGB's allowable-value lists
(``ogb/utils/features.py``), so a model embeds each with its own table of
``get_atom_feature_dims()[k]`` rows and sums them (OGB's ``AtomEncoder``). A value outside a list
falls back to the list's last entry: ``'misc'`` where OGB has one. The bond-stereo list has no
``'misc'``; OGB raises on a value outside it, we map it to its last entry (``STEREOANY``). Only the
atropisomer tags of newer RDKit (never set by SMILES parsing) are affected.

Bonds become two directed edges, ``i -> j`` then ``j -> i``, in RDKit's bond order, as in OGB.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
from rdkit import Chem

FEATURE_VERSION = "ogb-smiles2graph-v1"
"""Names the featurisation; part of every cache key, so change it whenever the features change."""

ALLOWABLE_FEATURES: Mapping[str, tuple[Any, ...]] = {
    "atomic_num": (*range(1, 119), "misc"),
    "chirality": (
        "CHI_UNSPECIFIED",
        "CHI_TETRAHEDRAL_CW",
        "CHI_TETRAHEDRAL_CCW",
        "CHI_OTHER",
        "misc",
    ),
    "degree": (*range(11), "misc"),
    "formal_charge": (*range(-5, 6), "misc"),
    "num_hs": (*range(9), "misc"),
    "num_radical_electrons": (*range(5), "misc"),
    "hybridization": ("SP", "SP2", "SP3", "SP3D", "SP3D2", "misc"),
    "is_aromatic": (False, True),
    "is_in_ring": (False, True),
    "bond_type": ("SINGLE", "DOUBLE", "TRIPLE", "AROMATIC", "misc"),
    "bond_stereo": ("STEREONONE", "STEREOZ", "STEREOE", "STEREOCIS", "STEREOTRANS", "STEREOANY"),
    "is_conjugated": (False, True),
}
"""OGB's allowable values per feature, in OGB's order (the index is the feature value)."""

ATOM_FEATURES = (
    "atomic_num",
    "chirality",
    "degree",
    "formal_charge",
    "num_hs",
    "num_radical_electrons",
    "hybridization",
    "is_aromatic",
    "is_in_ring",
)
BOND_FEATURES = ("bond_type", "bond_stereo", "is_conjugated")

_INDEX = {name: {v: i for i, v in enumerate(values)} for name, values in ALLOWABLE_FEATURES.items()}
_FALLBACK = {name: len(values) - 1 for name, values in ALLOWABLE_FEATURES.items()}


class MolGraph(NamedTuple):
    """One molecule as a directed graph (OGB's ``smiles2graph`` dict, as arrays).

    Attributes:
      node_feat: ``int32[num_nodes, 9]`` atom feature indices (order of :data:`ATOM_FEATURES`).
      edge_feat: ``int32[num_edges, 3]`` bond feature indices (order of :data:`BOND_FEATURES`).
      edge_index: ``int32[2, num_edges]`` senders (row 0) and receivers (row 1); both directions.
    """

    node_feat: np.ndarray
    edge_feat: np.ndarray
    edge_index: np.ndarray

    @property
    def num_nodes(self) -> int:
        return self.node_feat.shape[0]

    @property
    def num_edges(self) -> int:
        return self.edge_feat.shape[0]


def get_atom_feature_dims() -> list[int]:
    """Returns the number of categories of each of the 9 atom features (embedding-table sizes).

    Example:
      >>> get_atom_feature_dims()
      [119, 5, 12, 12, 10, 6, 6, 2, 2]
    """
    return [len(ALLOWABLE_FEATURES[name]) for name in ATOM_FEATURES]


def get_bond_feature_dims() -> list[int]:
    """Returns the number of categories of each of the 3 bond features (embedding-table sizes).

    Example:
      >>> get_bond_feature_dims()
      [5, 6, 2]
    """
    return [len(ALLOWABLE_FEATURES[name]) for name in BOND_FEATURES]


def _safe_index(name: str, value: Any) -> int:
    """Index of ``value`` in the allowable list ``name``; its last entry when absent (OGB)."""
    return _INDEX[name].get(value, _FALLBACK[name])


def atom_to_feature_vector(atom: Chem.Atom) -> list[int]:
    """Returns the 9 categorical features of an RDKit atom, as OGB's ``atom_to_feature_vector``.

    Example:
      >>> mol = Chem.MolFromSmiles("Cl[C@H](/C=C/C)Br")
      >>> atom_to_feature_vector(mol.GetAtomWithIdx(1))  # the chiral carbon (OGB's own check)
      [5, 2, 4, 5, 1, 0, 2, 0, 0]
    """
    return [
        _safe_index("atomic_num", atom.GetAtomicNum()),
        _safe_index("chirality", str(atom.GetChiralTag())),
        _safe_index("degree", atom.GetTotalDegree()),
        _safe_index("formal_charge", atom.GetFormalCharge()),
        _safe_index("num_hs", atom.GetTotalNumHs()),
        _safe_index("num_radical_electrons", atom.GetNumRadicalElectrons()),
        _safe_index("hybridization", str(atom.GetHybridization())),
        _INDEX["is_aromatic"][atom.GetIsAromatic()],
        _INDEX["is_in_ring"][atom.IsInRing()],
    ]


def bond_to_feature_vector(bond: Chem.Bond) -> list[int]:
    """Returns the 3 categorical features of an RDKit bond, as OGB's ``bond_to_feature_vector``.

    Example:
      >>> mol = Chem.MolFromSmiles("Cl[C@H](/C=C/C)Br")
      >>> bond_to_feature_vector(mol.GetBondWithIdx(2))  # the E double bond (OGB's own check)
      [1, 2, 0]
    """
    return [
        _safe_index("bond_type", str(bond.GetBondType())),
        _safe_index("bond_stereo", str(bond.GetStereo())),
        _INDEX["is_conjugated"][bond.GetIsConjugated()],
    ]


def mol_to_graph(mol: Chem.Mol) -> MolGraph:
    """Returns the graph of a parsed RDKit molecule (hydrogens implicit, as OGB's default).

    Args:
      mol: a sanitised RDKit molecule.

    Returns:
      A :class:`MolGraph` with one node per heavy atom and two directed edges per bond.
    """
    # Indexing by position is several times faster than RDKit's Python-level atom/bond iterators.
    atoms = [atom_to_feature_vector(mol.GetAtomWithIdx(i)) for i in range(mol.GetNumAtoms())]
    node_feat = np.asarray(atoms, np.int32).reshape(-1, len(ATOM_FEATURES))
    edges, edge_feat = [], []
    for b in range(mol.GetNumBonds()):
        bond = mol.GetBondWithIdx(b)
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        feat = bond_to_feature_vector(bond)
        edges += [(i, j), (j, i)]
        edge_feat += [feat, feat]
    edge_index = np.asarray(edges, np.int32).reshape(-1, 2).T
    edge_feat = np.asarray(edge_feat, np.int32).reshape(-1, len(BOND_FEATURES))
    return MolGraph(node_feat, edge_feat, np.ascontiguousarray(edge_index))


def smiles_to_graph(smiles: str) -> MolGraph:
    """Parses a SMILES string with RDKit and returns its graph (OGB's ``smiles2graph``).

    Args:
      smiles: a SMILES string.

    Returns:
      A :class:`MolGraph`.

    Raises:
      ValueError: if RDKit cannot parse (or sanitise) ``smiles``; dataset loaders catch this, skip
        the molecule and count it.

    Example:
      >>> g = smiles_to_graph("CCO")  # ethanol: 3 heavy atoms, 2 bonds = 4 directed edges
      >>> g.num_nodes, g.num_edges, g.edge_index.tolist()
      (3, 4, [[0, 1, 1, 2], [1, 0, 2, 1]])
    """
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(
            f"RDKit cannot parse the SMILES {smiles!r}; skip this molecule or fix the string."
        )
    return mol_to_graph(mol)


def check_feature_ranges(node_feat: np.ndarray, edge_feat: np.ndarray) -> None:
    """Raises ``ValueError`` if any feature index lies outside its embedding table.

    Args:
      node_feat: ``[num_nodes, 9]`` atom feature indices.
      edge_feat: ``[num_edges, 3]`` bond feature indices.
    """
    for what, feat, dims in (
        ("node_feat", node_feat, get_atom_feature_dims()),
        ("edge_feat", edge_feat, get_bond_feature_dims()),
    ):
        feat = np.asarray(feat)
        if feat.ndim != 2 or feat.shape[1] != len(dims):
            raise ValueError(f"{what} must have shape [n, {len(dims)}]; got {feat.shape}.")
        if feat.size and (feat.min() < 0 or np.any(feat.max(axis=0) >= np.asarray(dims))):
            raise ValueError(
                f"{what} has indices outside the feature dims {dims}: per-column max "
                f"{feat.max(axis=0).tolist()}, min {feat.min(axis=0).tolist()}. The data was "
                "featurised differently; rebuild it with this module."
            )
