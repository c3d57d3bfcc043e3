"""Tests of the molecule data side: featurisation, CSV loading, scaffold split, cache, batching,
the TFDS source and OGB's metrics.

Data-free tests use small generated SMILES sets and run in a few seconds. Tests marked ``data`` read
the real MoleculeNet files under ``$EQAGG_DATA_DIR`` (skipped with a reason when absent); tox21 is
featurised at most once per session (then read from the cache in ``resolve_cache_dir``).
"""

from __future__ import annotations

import csv
import gzip
import itertools
import logging
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem.Scaffolds import MurckoScaffold

from examples.molecules import dataset as dataset_lib
from examples.molecules import features, input_pipeline, metrics, moleculenet, splits, tfds_source

# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------

# 20 molecules with known scaffold groups: benzene 8 (one of them hypervalent Al, which current
# RDKit will not sanitise), pyridine 4, acyclic 3, cyclohexane 2, and three singletons.
GENERATED = [
    ("Cc1ccccc1", "c1ccccc1"),
    ("CCO", ""),
    ("Cc1ccncc1", "c1ccncc1"),
    ("CCc1ccccc1", "c1ccccc1"),
    ("OCCc1ccccc1", "c1ccccc1"),
    ("CC1CCCCC1", "C1CCCCC1"),
    ("CCCC", ""),
    ("CCc1ccncc1", "c1ccncc1"),
    ("Oc1ccccc1", "c1ccccc1"),
    ("Nc1ccccc1", "c1ccccc1"),
    ("Cc1ccc2ccccc2c1", "c1ccc2ccccc2c1"),
    ("O[AlH3](O)Oc1ccccc1", "c1ccccc1"),
    ("Clc1ccccc1", "c1ccccc1"),
    ("OCc1ccncc1", "c1ccncc1"),
    ("CC(C)O", ""),
    ("Brc1ccccc1", "c1ccccc1"),
    ("OC1CCCCC1", "C1CCCCC1"),
    ("Cc1ccco1", "c1ccoc1"),
    ("Nc1ccncc1", "c1ccncc1"),
    ("Cc1cccs1", "c1ccsc1"),
]
GENERATED_SMILES = [s for s, _ in GENERATED]
UNPARSEABLE = {11}  # the hypervalent Al row


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", newline="") as f:
        csv.writer(f).writerows([header, *rows])


def _generated_table(name: str = "tox21") -> moleculenet.MoleculeTable:
    """The generated molecules with deterministic labels (NaN every 5th entry)."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=(len(GENERATED), 12)).astype(np.float32)
    labels.ravel()[::5] = np.nan
    return moleculenet.MoleculeTable(
        name, tuple(GENERATED_SMILES), labels, tuple(f"t{k}" for k in range(12)), Path("generated")
    )


@pytest.fixture(scope="module")
def generated() -> dataset_lib.GraphDataset:
    return dataset_lib.build_moleculenet_dataset(_generated_table())


def _data_dir_or_skip() -> Path:
    from examples.common.data_dir import resolve_data_dir

    try:
        folder = resolve_data_dir(subdir="moleculenet")
        moleculenet.find_csv("tox21")
    except FileNotFoundError as e:
        pytest.skip(f"real MoleculeNet data not available ({e}); set EQAGG_DATA_DIR")
    return folder


@pytest.fixture(scope="module")
def tox21() -> dataset_lib.GraphDataset:
    _data_dir_or_skip()
    return dataset_lib.load_moleculenet("tox21")  # featurised once, then from the cache


# ---------------------------------------------------------------------------------------------
# Featurisation
# ---------------------------------------------------------------------------------------------


def test_feature_dims_match_ogb():
    assert features.get_atom_feature_dims() == [119, 5, 12, 12, 10, 6, 6, 2, 2]
    assert features.get_bond_feature_dims() == [5, 6, 2]


def test_ogb_reference_vectors():
    # The expected values are OGB's own checks in ogb/utils/features.py.
    mol = Chem.MolFromSmiles("Cl[C@H](/C=C/C)Br")
    assert features.atom_to_feature_vector(mol.GetAtomWithIdx(1)) == [5, 2, 4, 5, 1, 0, 2, 0, 0]
    assert features.bond_to_feature_vector(mol.GetBondWithIdx(2)) == [1, 2, 0]


def test_ethanol_graph():
    g = features.smiles_to_graph("CCO")
    assert (g.num_nodes, g.num_edges) == (3, 4)  # 2 bonds, both directions
    assert g.edge_index.tolist() == [[0, 1, 1, 2], [1, 0, 2, 1]]
    assert g.node_feat[:, 0].tolist() == [5, 5, 7]  # atomic number - 1: C, C, O
    assert g.node_feat[:, 4].tolist() == [3, 2, 1]  # hydrogens
    assert g.node_feat[:, 2].tolist() == [4, 4, 2]  # total degree (hydrogens included)
    assert g.edge_feat.tolist() == [[0, 0, 0]] * 4  # single, no stereo, not conjugated


def test_benzene_graph():
    g = features.smiles_to_graph("c1ccccc1")
    assert (g.num_nodes, g.num_edges) == (6, 12)
    assert np.all(g.node_feat[:, 7] == 1) and np.all(g.node_feat[:, 8] == 1)  # aromatic, in ring
    assert np.all(g.node_feat[:, 6] == 1)  # SP2
    assert np.all(g.edge_feat == [3, 0, 1])  # aromatic, no stereo, conjugated
    # every bond appears once per direction
    pairs = set(map(tuple, g.edge_index.T.tolist()))
    assert len(pairs) == 12 and all((j, i) in pairs for i, j in pairs)


def test_misc_fallback_and_no_bonds():
    g = features.smiles_to_graph("[Cr+6]")  # formal charge +6 is outside OGB's list -> 'misc'
    assert g.node_feat[0, 3] == features.get_atom_feature_dims()[3] - 1
    g = features.smiles_to_graph("[Na+].[Cl-]")
    assert g.num_nodes == 2 and g.edge_index.shape == (2, 0) and g.edge_feat.shape == (0, 3)
    assert g.node_feat[0, 6] == features.get_atom_feature_dims()[6] - 1  # Na+: hybridisation misc


def test_feature_ranges_within_dims(generated):
    features.check_feature_ranges(generated.node_feat, generated.edge_feat)
    with pytest.raises(ValueError, match="outside the feature dims"):
        features.check_feature_ranges(generated.node_feat + 200, generated.edge_feat)


def test_unparseable_smiles_raises_single_and_is_counted_in_bulk(caplog):
    with pytest.raises(ValueError, match="cannot parse"):
        features.smiles_to_graph("C1CC")
    smiles = ["CCO", "not a smiles", "C1CC", "CC(=O)O[AlH3](O)O", "c1ccccc1"]
    with caplog.at_level(logging.WARNING):
        ds = dataset_lib.build_moleculenet_dataset(
            moleculenet.MoleculeTable(
                "t", tuple(smiles), np.zeros((5, 1), np.float32), ("a",), Path("x")
            )
        )
    assert ds.skipped.tolist() == [1, 2, 3]
    assert len(ds) == 2 and ds.source_index.tolist() == [0, 4]
    assert "skipped 3 of 5" in caplog.text
    assert sum(ds.info["dropped_per_part"].values()) == 3


# ---------------------------------------------------------------------------------------------
# MoleculeNet CSV loading
# ---------------------------------------------------------------------------------------------


def test_csv_layouts(tmp_path):
    folder = tmp_path / "moleculenet"
    folder.mkdir()
    tox_header = ["smiles", *moleculenet.DATASETS["tox21"].tasks]
    _write_csv(
        folder / "tox21.csv", tox_header, [["CCO", "1", "", *["0"] * 10], ["C1CC", *["1"] * 12]]
    )
    _write_csv(
        folder / "BBBP.csv",
        ["num", "name", "p_np", "smiles"],
        [["1", "a", "1", "CCN"], ["2", "b", "0", "CCC"]],
    )
    _write_csv(
        folder / "bace.csv", ["mol", "CID", "Class", "pIC50"], [["c1ccccc1", "x", "1", "7.1"]]
    )
    _write_csv(
        folder / "muv.csv.gz", ["MUV-1", "MUV-2", "mol_id", "smiles"], [["", "0", "id", "CC"]]
    )

    tox = moleculenet.load_moleculenet_csv("tox21", tmp_path)
    assert tox.smiles == ("CCO", "C1CC") and tox.labels.shape == (2, 12)
    assert tox.labels[0, 0] == 1 and np.isnan(tox.labels[0, 1])
    bbbp = moleculenet.load_moleculenet_csv("bbbp", tmp_path)
    assert bbbp.smiles == ("CCN", "CCC") and bbbp.labels[:, 0].tolist() == [1, 0]
    bace = moleculenet.load_moleculenet_csv("ogbg-molbace", tmp_path)
    assert bace.tasks == ("Class",) and bace.smiles == ("c1ccccc1",)
    muv = moleculenet.load_moleculenet_csv("muv", tmp_path)
    assert muv.tasks == ("MUV-1", "MUV-2") and np.isnan(muv.labels[0, 0]) and muv.labels[0, 1] == 0

    with pytest.raises(FileNotFoundError, match="sider"):
        moleculenet.load_moleculenet_csv("sider", tmp_path)
    with pytest.raises(ValueError, match="Unknown MoleculeNet dataset"):
        moleculenet.get_spec("qm9")
    _write_csv(folder / "clintox.csv", ["smiles", "FDA_APPROVED"], [["CC", "1"]])
    with pytest.raises(ValueError, match="CT_TOX"):
        moleculenet.load_moleculenet_csv("clintox", tmp_path)


# ---------------------------------------------------------------------------------------------
# Scaffold split
# ---------------------------------------------------------------------------------------------


def test_scaffolds_match_rdkit_and_cover_unsanitisable():
    for i, (smiles, scaffold) in enumerate(GENERATED):
        assert splits.murcko_scaffold(smiles) == scaffold
        if i not in UNPARSEABLE:  # independent truth: RDKit's own function
            assert scaffold == MurckoScaffold.MurckoScaffoldSmiles(
                smiles=smiles, includeChirality=True
            )
    assert splits.murcko_scaffold("C[C@H]1CCCN1C") == "C1CCNC1"
    assert splits.murcko_scaffold("not a smiles") == "<unparsable>not a smiles"


def test_split_logic_on_generated_smiles():
    split = splits.scaffold_split(GENERATED_SMILES)
    # Groups by size: benzene 8, pyridine 4, acyclic 3, cyclohexane 2, singletons 10, 17, 19.
    # Cutoffs 16 and 18: train takes 8 + 4 + 3, cyclohexane (17 > 16) goes to valid, the
    # singleton with the largest first index (19) fills train to 16, the other two go to test.
    assert split.sizes == (16, 2, 2)
    assert sorted(split.valid.tolist()) == [5, 16]
    assert sorted(split.test.tolist()) == [10, 17]
    assert 19 in split.train
    scaffold = dict(enumerate(s for _, s in GENERATED))
    _assert_partition(split, len(GENERATED), scaffold)


def test_split_drop_renumbers_and_counts():
    split = splits.scaffold_split(GENERATED_SMILES)
    assert split.dropped_per_part(sorted(UNPARSEABLE)) == {"train": 1, "valid": 0, "test": 0}
    kept = split.drop(sorted(UNPARSEABLE), len(GENERATED))
    assert kept.sizes == (15, 2, 2)
    assert sorted(np.concatenate(list(kept.as_dict().values())).tolist()) == list(range(19))
    assert sorted(kept.test.tolist()) == [10, 16]  # row 17 is graph 16 once row 11 is gone


def test_split_rejects_bad_fractions():
    with pytest.raises(ValueError, match="must be 1"):
        splits.split_by_groups(["a", "b"], 0.8, 0.1, 0.2)


def _assert_partition(split: splits.ScaffoldSplit, n: int, scaffold_of: dict[int, str]) -> None:
    parts = split.as_dict()
    all_idx = np.concatenate(list(parts.values()))
    assert len(all_idx) == n and len(np.unique(all_idx)) == n  # disjoint and complete
    part_of_scaffold: dict[str, str] = {}
    for name, idx in parts.items():
        for i in idx.tolist():
            assert part_of_scaffold.setdefault(scaffold_of[i], name) == name, (
                "scaffold straddles parts"
            )


@pytest.mark.data
def test_tox21_split_sizes_equal_ogb(tox21):
    # OGB's published ogbg-moltox21 split over all 7831 rows ...
    assert tox21.info["num_rows"] == 7831
    assert tox21.info["split_sizes_all_rows"] == [6264, 783, 784]
    # ... of which the 8 hypervalent-Al SMILES that current RDKit rejects are dropped.
    assert tox21.skipped.tolist() == [1322, 2290, 2297, 3558, 4565, 4649, 5538, 6723]
    assert tox21.info["dropped_per_part"] == {"train": 7, "valid": 0, "test": 1}
    assert {k: len(v) for k, v in tox21.splits.items()} == {
        "train": 6257,
        "valid": 783,
        "test": 783,
    }
    assert len(tox21) == 7823 and tox21.labels.shape == (7823, 12)
    table = moleculenet.load_moleculenet_csv("tox21")
    scaffold_of = {
        g: splits.murcko_scaffold(table.smiles[row]) for g, row in enumerate(tox21.source_index)
    }
    split = splits.ScaffoldSplit(**tox21.splits)
    _assert_partition(split, len(tox21), scaffold_of)
    features.check_feature_ranges(tox21.node_feat, tox21.edge_feat)
    # the stored labels are the file's rows
    np.testing.assert_array_equal(tox21.labels, table.labels[tox21.source_index])


@pytest.mark.data
@pytest.mark.slow
def test_hiv_split_sizes_equal_ogb():
    _data_dir_or_skip()
    hiv = dataset_lib.load_moleculenet("hiv")  # ~1 min the first time (41,127 molecules), cached
    assert hiv.info["split_sizes_all_rows"] == [32901, 4113, 4113]  # OGB's ogbg-molhiv
    assert len(hiv.skipped) == 7 and hiv.info["dropped_per_part"] == {
        "train": 3,
        "valid": 2,
        "test": 2,
    }
    assert {k: len(v) for k, v in hiv.splits.items()} == {
        "train": 32898,
        "valid": 4111,
        "test": 4111,
    }


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------


def test_cache_roundtrip_and_invalidation(tmp_path):
    folder = tmp_path / "data" / "moleculenet"
    folder.mkdir(parents=True)
    table = _generated_table()
    rows = [
        [s, *["" if np.isnan(v) else str(int(v)) for v in lab]]
        for s, lab in zip(table.smiles, table.labels, strict=True)
    ]
    _write_csv(folder / "tox21.csv", ["smiles", *moleculenet.DATASETS["tox21"].tasks], rows)
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()

    fresh = dataset_lib.load_moleculenet("tox21", tmp_path / "data", cache_dir=cache_dir)
    assert dataset_lib.cache_path("tox21", cache_dir).exists()
    cached = dataset_lib.load_moleculenet("tox21", tmp_path / "data", cache_dir=cache_dir)
    for name in (
        "node_feat",
        "edge_feat",
        "senders",
        "receivers",
        "n_node",
        "n_edge",
        "labels",
        "source_index",
        "skipped",
    ):
        np.testing.assert_array_equal(getattr(cached, name), getattr(fresh, name), err_msg=name)
    for part in splits.SPLIT_NAMES:
        np.testing.assert_array_equal(cached.splits[part], fresh.splits[part])
    assert cached.tasks == fresh.tasks and cached.info == fresh.info

    # a changed source file invalidates the cache
    _write_csv(folder / "tox21.csv", ["smiles", *moleculenet.DATASETS["tox21"].tasks], rows[:10])
    assert len(dataset_lib.load_moleculenet("tox21", tmp_path / "data", cache_dir=cache_dir)) == 10
    # a corrupt cache file is ignored (and rewritten), never an error
    dataset_lib.cache_path("tox21", cache_dir).write_bytes(b"not an npz")
    assert len(dataset_lib.load_moleculenet("tox21", tmp_path / "data", cache_dir=cache_dir)) == 10
    assert dataset_lib.read_cache(dataset_lib.cache_path("tox21", cache_dir)) is not None


@pytest.mark.data
def test_tox21_cached_load_is_fast(tox21):
    start = time.perf_counter()
    again = dataset_lib.load_moleculenet("tox21")
    seconds = time.perf_counter() - start
    assert len(again) == len(tox21)
    assert seconds < 2.0, f"cached load took {seconds:.2f} s"  # ~0.05 s; featurising takes ~10 s


# ---------------------------------------------------------------------------------------------
# Batching
# ---------------------------------------------------------------------------------------------

SMALL_BUDGET = input_pipeline.PaddingBudget(n_node=64, n_edge=128, n_graph=5)


def test_batches_static_masked_and_complete(generated):
    batches = list(
        input_pipeline.iterate_batches(generated, "train", SMALL_BUDGET, shuffle=True, seed=1)
    )
    assert len(batches) > 2
    shapes = {jax.tree_util.tree_map(lambda x: (x.shape, x.dtype), b) for b in batches}
    assert len(shapes) == 1, "batches differ in shape or dtype"
    seen = np.concatenate([b.graph_index[b.graph_mask] for b in batches])
    assert sorted(seen.tolist()) == sorted(generated.split("train").tolist())  # each graph once
    for b in batches:
        k = int(b.graph_mask.sum())
        assert b.graph_mask[:k].all() and not b.graph_mask[k:].any()
        assert not b.label_mask[k:].any() and np.all(b.labels[k:] == 0)
        np.testing.assert_array_equal(
            b.label_mask[:k], ~np.isnan(generated.labels[b.graph_index[:k]])
        )
        _assert_graphs_match(generated, b)


def _assert_graphs_match(ds: dataset_lib.GraphDataset, b: input_pipeline.Batch) -> None:
    """Each real graph of the batch equals the dataset's graph; padding stays in padding graphs."""
    g = b.graphs
    node_start = np.concatenate([[0], np.cumsum(g.n_node)])
    edge_start = np.concatenate([[0], np.cumsum(g.n_edge)])
    for slot, gid in enumerate(b.graph_index.tolist()):
        n0, n1, e0, e1 = (
            node_start[slot],
            node_start[slot + 1],
            edge_start[slot],
            edge_start[slot + 1],
        )
        assert np.all((g.senders[e0:e1] >= n0) & (g.senders[e0:e1] < n1))
        assert np.all((g.receivers[e0:e1] >= n0) & (g.receivers[e0:e1] < n1))
        if gid >= 0:
            ref = ds.graph(gid)
            np.testing.assert_array_equal(g.nodes[n0:n1], ref.node_feat)
            np.testing.assert_array_equal(g.edges[e0:e1], ref.edge_feat)
            np.testing.assert_array_equal(
                np.stack([g.senders[e0:e1], g.receivers[e0:e1]]) - n0, ref.edge_index
            )


def test_shuffle_is_deterministic_per_seed_and_epoch(generated):
    def order(**kw):
        plan = input_pipeline.plan_batches(generated, "train", SMALL_BUDGET, shuffle=True, **kw)
        return np.concatenate(plan).tolist()

    assert order(seed=0, epoch=0) == order(seed=0, epoch=0)
    assert order(seed=0, epoch=0) != order(seed=0, epoch=1)
    assert order(seed=0, epoch=0) != order(seed=1, epoch=0)
    unshuffled = input_pipeline.plan_batches(generated, "train", SMALL_BUDGET)
    assert np.concatenate(unshuffled).tolist() == generated.split("train").tolist()


def test_repeat_batches_resumes_at_step(generated):
    def take(start_step, n):
        it = input_pipeline.repeat_batches(
            generated, "train", SMALL_BUDGET, seed=3, start_step=start_step
        )
        return [b.graph_index.tolist() for b in itertools.islice(it, n)]

    stream = take(0, 12)  # crosses several epoch boundaries
    assert take(7, 5) == stream[7:]


def test_no_recompilation_across_batches(generated):
    traces = []

    @jax.jit
    def readout(batch):
        traces.append(1)
        graph_of_node = jnp.repeat(
            jnp.arange(SMALL_BUDGET.n_graph),
            batch.graphs.n_node,
            total_repeat_length=SMALL_BUDGET.n_node,
        )
        per_graph = jax.ops.segment_sum(
            batch.graphs.nodes.sum(-1), graph_of_node, SMALL_BUDGET.n_graph
        )
        return jnp.sum(jnp.where(batch.graph_mask, per_graph, 0))

    total = 0
    for b in input_pipeline.iterate_batches(generated, "train", SMALL_BUDGET, shuffle=True):
        total += int(readout(b))
    assert len(traces) == 1
    assert total == int(generated.node_feat[_node_rows(generated, generated.split("train"))].sum())


def _node_rows(ds, ids):
    return np.concatenate([np.arange(ds.node_offsets[i], ds.node_offsets[i + 1]) for i in ids])


def test_budget_too_small_is_an_actionable_error(generated):
    with pytest.raises(ValueError, match="does not fit the budget"):
        input_pipeline.plan_batches(generated, "train", input_pipeline.PaddingBudget(5, 8, 4))
    with pytest.raises(ValueError, match="n_graph must be >= 2"):
        input_pipeline.plan_batches(generated, "train", input_pipeline.PaddingBudget(64, 64, 1))


def test_estimated_budget_fits_every_graph(generated):
    budget = input_pipeline.estimate_padding_budget(
        generated, batch_size=4, split="train", multiple=8
    )
    assert budget.n_graph == 5 and budget.n_node % 8 == 0 and budget.n_edge % 8 == 0
    assert budget.n_node > generated.n_node.max() and budget.n_edge >= generated.n_edge.max()
    plan = input_pipeline.plan_batches(generated, "train", budget)
    assert sum(map(len, plan)) == len(generated.split("train"))


@pytest.mark.data
def test_tox21_budget_and_epoch(tox21):
    budget = input_pipeline.estimate_padding_budget(tox21, batch_size=128)
    assert budget.n_graph == 129
    # The budget covers 99% of random 128-graph batches of the train part (16.5 nodes per graph on
    # average): above the mean total, far below 128 times the 99th percentile of one graph.
    n_node = tox21.n_node[tox21.split("train")]
    assert 128 * n_node.mean() < budget.n_node < 128 * np.percentile(n_node, 99)
    plan = input_pipeline.plan_batches(tox21, "train", budget, shuffle=True, seed=0, epoch=0)
    full = np.mean([len(ids) == 128 for ids in plan[:-1]])
    assert full > 0.9, f"only {full:.0%} of batches hold batch_size graphs"
    assert sorted(np.concatenate(plan).tolist()) == sorted(tox21.split("train").tolist())


# ---------------------------------------------------------------------------------------------
# TFDS ogbg_molpcba source (a fake data source: no network, no prepared dataset)
# ---------------------------------------------------------------------------------------------


class _FakeSource:
    """A random-access source of ogbg_molpcba-style records that counts its reads."""

    def __init__(self, smiles: list[str], seed: int):
        rng = np.random.default_rng(seed)
        self.records, self.reads = [], 0
        for s in smiles:
            g = features.smiles_to_graph(s)
            labels = rng.integers(0, 2, 128).astype(np.float32)
            labels[rng.random(128) < 0.3] = np.nan
            self.records.append(
                {
                    "num_nodes": np.array([g.num_nodes], np.int64),
                    "node_feat": g.node_feat.astype(np.float32),
                    "num_edges": np.array([g.num_edges // 2], np.int64),
                    "edge_feat": g.edge_feat[::2].astype(np.float32),  # OGB stores each bond once
                    "edge_index": g.edge_index[:, ::2].T.astype(np.int64),
                    "labels": labels,
                }
            )

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        self.reads += 1
        return self.records[i]


FAKE_SPLITS = {
    "train": ["CCO", "c1ccccc1", "[Na+].[Cl-]"],
    "validation": ["Cc1ccncc1"],
    "test": ["CC(=O)O", "C1CC1"],
}


def _fake_sources():
    return {
        split: _FakeSource(smiles, seed) for seed, (split, smiles) in enumerate(FAKE_SPLITS.items())
    }


def test_tfds_source_converts_records_like_smiles2graph(tmp_path):
    sources = _fake_sources()
    fake = lambda name, *, split, data_dir: sources[split]
    ds = tfds_source.load_ogbg_molpcba(cache_dir=tmp_path, data_source_fn=fake)
    assert ds.name == "ogbg_molpcba" and ds.num_tasks == 128
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 3, "valid": 1, "test": 2}
    all_smiles = [s for smiles in FAKE_SPLITS.values() for s in smiles]
    for gid, s in enumerate(all_smiles):
        ref, got = features.smiles_to_graph(s), ds.graph(gid)
        np.testing.assert_array_equal(got.node_feat, ref.node_feat)
        np.testing.assert_array_equal(got.edge_feat, ref.edge_feat)
        np.testing.assert_array_equal(got.edge_index, ref.edge_index)
    labels = np.concatenate([[r["labels"] for r in sources[k].records] for k in FAKE_SPLITS])
    np.testing.assert_array_equal(ds.labels, labels)  # NaN where missing, in the same places
    batch = next(input_pipeline.iterate_batches(ds, "train", SMALL_BUDGET))
    assert batch.graph_mask.sum() == 3

    # The second load reads the cache, not the records.
    reads = sum(s.reads for s in sources.values())
    again = tfds_source.load_ogbg_molpcba(cache_dir=tmp_path, data_source_fn=fake)
    assert sum(s.reads for s in sources.values()) == reads
    np.testing.assert_array_equal(again.node_feat, ds.node_feat)


def test_tfds_default_path_uses_data_source(tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    sources = _fake_sources()
    calls = []

    def fake_data_source(name, *, split, data_dir, download):
        calls.append((name, split, data_dir, download))
        return sources[split]

    monkeypatch.setattr(tfds, "data_source", fake_data_source)
    ds = input_pipeline.load_dataset("ogbg-molpcba", str(tmp_path / "tfds"), cache=False)
    assert len(ds) == 6
    assert calls[0] == ("ogbg_molpcba", "train", str(tmp_path / "tfds"), False)

    def missing(name, **kwargs):
        raise NotImplementedError(
            "Random access data source for file format TFRECORD is not supported"
        )

    monkeypatch.setattr(tfds, "data_source", missing)
    with pytest.raises(RuntimeError, match="tfds build ogbg_molpcba --file_format=array_record"):
        tfds_source.load_ogbg_molpcba(cache=False)


def test_record_with_inconsistent_shapes_is_rejected():
    record = dict(_FakeSource(["CCO"], 0).records[0])
    record["edge_feat"] = record["edge_feat"][:1]
    with pytest.raises(ValueError, match="edge_index has 2 rows but edge_feat 1"):
        tfds_source.record_to_graph(record)


# ---------------------------------------------------------------------------------------------
# Metrics (OGB's evaluator)
# ---------------------------------------------------------------------------------------------


def test_roc_auc_hand_computed():
    # Positive 0.35 beats negative 0.1 only, positive 0.8 beats both: 3 of 4 pairs.
    assert metrics.roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert metrics.roc_auc_score([0, 1], [0.5, 0.5]) == 0.5  # a tie counts one half
    assert metrics.roc_auc_score([1, 0, 1, 0], [0.9, 0.9, 0.2, 0.1]) == 0.625  # (1 + .5 + 0 + 1)/4


def test_average_precision_hand_computed():
    # thresholds 0.8: P=1, R=1/2; 0.4: P=1/2; 0.35: P=2/3, R=1 -> 1/2 * 1 + 1/2 * 2/3
    assert metrics.average_precision_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(
        5 / 6, abs=1e-15
    )
    # a tie at the top: threshold 0.5 gives P=1/2, R=1/2; 0.2 gives P=2/3, R=1 (no interpolation)
    assert metrics.average_precision_score([1, 0, 1], [0.5, 0.5, 0.2]) == pytest.approx(
        0.25 + 1 / 3, abs=1e-15
    )


def _pairwise_auc(y, s):
    pos, neg = s[y == 1], s[y == 0]
    return np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))


def _ap_by_positive(y, s):
    # (1/P) * sum over positives of the precision at that positive's score: the same sum as
    # sklearn's step-wise AP, organised by positive instead of by threshold.
    return np.mean([np.sum(y[s >= t]) / np.sum(s >= t) for t in s[y == 1]])


@pytest.mark.parametrize("seed", range(5))
def test_metrics_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60)
    y[:2] = [0, 1]
    s = rng.integers(0, 10, 60) / 10  # many ties
    # tolerances: the two sides sum the same rationals in different orders (float64 rounding)
    assert metrics.roc_auc_score(y, s) == pytest.approx(_pairwise_auc(y, s), abs=1e-12)
    assert metrics.average_precision_score(y, s) == pytest.approx(_ap_by_positive(y, s), abs=1e-12)


def test_metrics_against_sklearn_if_installed():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y, s = rng.integers(0, 2, 200), rng.normal(size=200).round(1)
    assert metrics.roc_auc_score(y, s) == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)
    assert metrics.average_precision_score(y, s) == pytest.approx(
        sk.average_precision_score(y, s), abs=1e-12
    )


def test_evaluate_masks_nan_and_single_class_tasks():
    nan = np.nan
    y_true = np.array(
        [[0, 1, 1, nan], [1, nan, 1, 0], [1, 0, 1, nan], [0, 0, 1, nan], [nan, 1, 1, 1]]
    )
    y_pred = np.array(
        [
            [0.1, 0.9, 0.3, 0.5],
            [0.6, 0.2, 0.1, 0.4],
            [0.8, 0.3, 0.2, 0.1],
            [0.4, 0.5, 0.9, 0.2],
            [0.9, 0.1, 0.5, 0.7],
        ]
    )
    result = metrics.evaluate(y_true, y_pred, "rocauc")
    # task 0: labelled rows 0-3, positives 0.6, 0.8 beat negatives 0.1, 0.4 -> 1.0
    # task 1: labelled rows 0, 2, 3, 4: positives 0.9, 0.1; negatives 0.3, 0.5 -> 2/4 = 0.5
    # task 2: only positives -> skipped; task 3: rows 1, 4: negative 0.4 < positive 0.7 -> 1.0
    np.testing.assert_array_equal(result.scored, [True, True, False, True])
    np.testing.assert_allclose(result.per_task, [1.0, 0.5, nan, 1.0])
    assert result.value == pytest.approx(2.5 / 3, abs=1e-15)
    assert result.as_dict() == {"rocauc": result.value}
    # a graph mask (padding graphs) acts like NaN labels
    masked = metrics.evaluate(np.nan_to_num(y_true), y_pred, "rocauc", mask=~np.isnan(y_true))
    assert masked.value == result.value
    ap = metrics.evaluate(y_true, y_pred, metrics.metric_for_dataset("ogbg-molpcba"))
    assert ap.metric == "ap" and ap.per_task[0] == 1.0


def test_evaluate_errors():
    with pytest.raises(ValueError, match="No task has both"):
        metrics.evaluate([[1.0], [1.0]], [[0.1], [0.2]])
    with pytest.raises(ValueError, match="metric must be one of"):
        metrics.evaluate([[1.0], [0.0]], [[0.1], [0.2]], "accuracy")
    with pytest.raises(ValueError, match="Task 0: y_score has NaN"):
        metrics.evaluate([[1.0], [0.0]], [[np.nan], [0.2]])
    assert (
        metrics.metric_for_dataset("muv") == "ap" and metrics.metric_for_dataset("HIV") == "rocauc"
    )
