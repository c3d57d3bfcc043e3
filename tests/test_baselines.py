"""Baseline aggregators: layouts, invariances, gradients, jit/vmap, jraph use and bad input."""

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph
import numpy as np
import pytest

from eqagg import _reductions
from eqagg._attention_pooling import PMA, AttentionPooling
from eqagg._baselines import (
    DeepSets,
    MaxAggregation,
    MeanAggregation,
    SoftmaxAggregation,
    SumAggregation,
)
from eqagg._layouts import make_sets
from eqagg._pna import PNA, pna_degree_statistics
from eqagg._set_module import as_segment_fn

B, N, D_IN = 4, 5, 3
# Test data is numpy: jax.random compiles slowly on CPU, and indexing numpy compiles nothing.
X = np.random.default_rng(0).normal(size=(B, N, D_IN)).astype(np.float32)
# Set 0 full, set 1 three scattered elements, set 2 one element, set 3 empty.
MASK = np.array([[1, 1, 1, 1, 1], [1, 0, 1, 0, 1], [0, 0, 0, 1, 0], [0, 0, 0, 0, 0]], dtype=bool)
X_NAN = np.where(MASK[..., None], X, np.float32(np.nan))  # padding that would poison any leak
# Outputs are O(1) float32 (eps 1.2e-7) after a few dozen operations; other layouts or float64 numpy
# change only the rounding, which stays well below this.
ATOL = 1e-5

MODULES = {
    "sum": SumAggregation(),
    "mean": MeanAggregation(),
    "max": MaxAggregation(),
    "softmax": SoftmaxAggregation(initial_temperature=0.7, per_channel=True),
    "deepsets": DeepSets(phi_features=[8, 6], rho_features=[8, 4]),
    "attention": AttentionPooling(out_features=8, num_heads=2),
    "pna": PNA(avg_log_degree=1.2, out_features=4),
    "pma": PMA(features=8, num_heads=2, num_seeds=2),
}


def init_variables(module: nn.Module, seed: int = 1) -> Any:
    """Random variables of the module's shapes, drawn with numpy.

    Skips compiling the module's initialisers (jax.random on CPU compiles slowly), and makes
    normally constant parameters (LayerNorm scales, biases) random, so that tests exercise them.
    """
    shapes = jax.eval_shape(module.init, jax.random.key(0), X, MASK)
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda s: jnp.asarray(rng.normal(0.0, 0.5, s.shape).astype(s.dtype)), shapes
    )


class Agg(NamedTuple):
    module: nn.Module
    variables: Any
    apply: Any  # jitted module.apply


@pytest.fixture(scope="module", params=list(MODULES))
def agg(request) -> Agg:
    module = MODULES[request.param]
    variables = init_variables(module)
    return Agg(module, variables, jax.jit(module.apply, static_argnames="num_segments"))


def flatten(x, mask):
    """Padded [B, N, d] + mask -> ragged rows [T, d] + segment_ids (the jraph layout)."""
    mask = np.asarray(mask)
    ids = np.repeat(np.arange(x.shape[0]), x.shape[1])[mask.reshape(-1)]
    return np.asarray(x).reshape(-1, x.shape[-1])[mask.reshape(-1)], ids


def close(a, b, atol=ATOL):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=atol)


# --- Layouts -------------------------------------------------------------------------------------


def test_three_layouts_agree(agg):
    v, apply = agg.variables, agg.apply
    padded = np.asarray(apply(v, X, MASK))
    assert padded.ndim == 2 and padded.shape[0] == B
    rows, ids = flatten(X, MASK)
    close(apply(v, rows, segment_ids=ids, num_segments=B), padded)
    for b in range(B):
        close(apply(v, X[b], MASK[b]), padded[b])  # one set, masked
    assert np.all(np.isfinite(padded))


def test_vmap_over_single_sets_equals_padded_batch(agg):
    single = lambda x, m: agg.module.apply(agg.variables, x, m)
    close(jax.jit(jax.vmap(single))(X, MASK), agg.apply(agg.variables, X, MASK))


# --- Invariances ---------------------------------------------------------------------------------


def test_permutation_invariance(agg):
    v, apply = agg.variables, agg.apply
    perm = np.array([3, 0, 4, 2, 1])
    close(apply(v, X[:, perm], MASK[:, perm]), apply(v, X, MASK))
    rows, ids = flatten(X, MASK)
    shuffle = np.random.default_rng(2).permutation(rows.shape[0])
    close(
        apply(v, rows[shuffle], segment_ids=ids[shuffle], num_segments=B),
        apply(v, rows, segment_ids=ids, num_segments=B),
    )


def test_padding_invariance_padded(agg):
    # NaN at every masked position, and set 3 is empty (a padding set).
    out = np.asarray(agg.apply(agg.variables, X_NAN, MASK))
    assert np.all(np.isfinite(out)), "empty and padding sets must give finite outputs"
    close(out, agg.apply(agg.variables, X, MASK))


def test_padding_invariance_segments(agg):
    v, apply = agg.variables, agg.apply
    rows, ids = flatten(X, MASK)
    clean = apply(v, rows, segment_ids=ids, num_segments=B)
    # A padding segment B with junk rows, and NaN rows whose ids are out of range (ignored; under
    # jit the ids are not checked, as when a pipeline marks dropped rows with -1).
    junk = np.full((2, D_IN), 1e3, np.float32)
    nan = np.full((2, D_IN), np.nan, np.float32)
    rows_p = np.concatenate([nan[:1], rows, junk, nan[1:]])
    ids_p = np.concatenate([[-1], ids, [B, B], [B + 1]])
    out = np.asarray(apply(v, rows_p, segment_ids=ids_p, num_segments=B + 1))
    assert np.all(np.isfinite(out))
    close(out[:B], clean)


# --- Gradients -----------------------------------------------------------------------------------


def _loss(module, variables, x, mask):
    out = module.apply(variables, x, mask)
    weights = jnp.cos(jnp.arange(out.size, dtype=out.dtype)).reshape(out.shape)  # fixed, nonzero
    return jnp.sum(weights * out)


def test_gradients_reach_every_parameter_and_skip_padding(agg):
    grad = jax.jit(jax.grad(lambda v, x, m: _loss(agg.module, v, x, m), argnums=(0, 1)))
    g_params, g_x = grad(agg.variables, X, MASK)
    for path, leaf in jax.tree_util.tree_leaves_with_path(g_params):
        assert np.any(np.asarray(leaf) != 0), f"no gradient reaches {jax.tree_util.keystr(path)}"
    assert np.any(np.asarray(g_x) != 0)
    # With NaN padding: identical, finite gradients; padding gets exactly zero.
    g_params_nan, g_x_nan = grad(agg.variables, X_NAN, MASK)
    jax.tree.map(close, g_params_nan, g_params)
    close(g_x_nan, g_x)
    np.testing.assert_array_equal(np.asarray(g_x_nan)[~MASK], 0)


# --- jraph ---------------------------------------------------------------------------------------


def _graph() -> jraph.GraphsTuple:
    """Graphs with 3, 1, 0 and 4 nodes, padded with jraph (padding nodes, edges and graphs)."""
    n_node = np.array([3, 1, 0, 4])
    senders = np.array([0, 1, 2, 2, 4, 5, 6, 7, 7])
    receivers = np.array([1, 2, 0, 1, 4, 4, 4, 4, 5])  # nodes 3, 6 and 7 receive none
    rng = np.random.default_rng(4)
    nodes = rng.normal(size=(8, D_IN)).astype(np.float32)
    edges = rng.normal(size=(9, D_IN)).astype(np.float32)
    graph = jraph.GraphsTuple(
        nodes=nodes,
        edges=edges,
        senders=senders,
        receivers=receivers,
        n_node=n_node,
        n_edge=np.array([4, 0, 0, 5]),
        globals=None,
    )
    return jraph.pad_with_graphs(graph, n_node=12, n_edge=12, n_graph=6)


def _groups(ids, num_groups):
    """Per group, the rows with that id padded to N rows, and their mask ([num_groups, N])."""
    rows = np.zeros((num_groups, N), np.int32)
    mask = np.zeros((num_groups, N), bool)
    for g in range(num_groups):
        members = np.flatnonzero(np.asarray(ids) == g)
        rows[g, : members.size], mask[g, : members.size] = members, True
    return rows, mask


def test_jraph_global_readout(agg):
    graph = _graph()
    n_graph = graph.n_node.shape[0]
    node_graph = np.repeat(np.arange(n_graph), graph.n_node)
    out = np.asarray(
        agg.apply(agg.variables, graph.nodes, segment_ids=node_graph, num_segments=n_graph)
    )
    assert out.shape[0] == n_graph and np.all(np.isfinite(out))
    rows, mask = _groups(node_graph, B)  # the four real graphs (one of them empty), [B, N]
    close(out[:B], agg.apply(agg.variables, graph.nodes[rows], mask))


def test_jraph_local_aggregation_of_edge_messages(agg):
    graph = _graph()
    n_nodes = graph.nodes.shape[0]
    out = np.asarray(
        agg.apply(agg.variables, graph.edges, segment_ids=graph.receivers, num_segments=n_nodes)
    )
    assert out.shape[0] == n_nodes and np.all(np.isfinite(out))
    rows, mask = _groups(graph.receivers, 2 * B)  # messages into each real node (some get none)
    for half in (slice(0, B), slice(B, 2 * B)):  # [B, N] batches: the fixture's compiled shape
        close(out[half], agg.apply(agg.variables, graph.edges[rows[half]], mask[half]))


def test_as_segment_fn_in_a_jraph_graph_network():
    module = MODULES["deepsets"]
    variables = init_variables(module)
    graph = _graph()

    @jax.jit
    def readout(variables, graph):
        network = jraph.GraphNetwork(
            update_edge_fn=None,
            update_node_fn=None,
            update_global_fn=lambda nodes, edges, globals_: nodes,
            aggregate_nodes_for_globals_fn=as_segment_fn(module, variables),
        )
        return network(graph).globals

    # Differentiable with respect to the variables the function was built from.
    grads = jax.grad(lambda v: jnp.sum(readout(v, graph)))(variables)
    assert all(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(grads))
    rows, mask = _groups(np.repeat(np.arange(graph.n_node.shape[0]), graph.n_node), B)
    apply = jax.jit(module.apply)
    close(np.asarray(readout(variables, graph))[:B], apply(variables, graph.nodes[rows], mask))


# --- Independent truth ---------------------------------------------------------------------------


def _numpy_per_set(fn, x, mask, width):
    return np.stack([fn(x[b][mask[b]]) if mask[b].any() else np.zeros(width) for b in range(B)])


NUMPY_REDUCTIONS = {
    "sum": lambda s: s.sum(0),
    "mean": lambda s: s.mean(0),
    "max": lambda s: s.max(0),
    "min": lambda s: s.min(0),
    "std": lambda s: np.sqrt(s.var(0) + _reductions.STD_EPS),
}


@pytest.mark.parametrize("layout", ["padded", "segments"])
@pytest.mark.parametrize("name", list(NUMPY_REDUCTIONS))
def test_reductions_match_numpy(name, layout):
    x, mask = np.asarray(X, np.float64), np.asarray(MASK)
    expected = _numpy_per_set(NUMPY_REDUCTIONS[name], x, mask, D_IN)
    if layout == "padded":
        sets = make_sets(X_NAN, mask=MASK)
    else:
        rows, ids = flatten(X, MASK)
        sets = make_sets(rows, segment_ids=ids, num_segments=B)
    reduce = lambda sets: _reductions.REDUCTIONS[name](sets, sets.x)
    close(reduce(sets), expected)
    close(jax.jit(reduce)(sets), expected)  # jit == eager


@pytest.mark.parametrize("name", list(NUMPY_REDUCTIONS))
def test_reductions_of_a_set_without_elements(name):
    sets = make_sets(np.zeros((0, D_IN), np.float32))  # one set [0, d]: a zero-length set axis
    out, grad = jax.value_and_grad(lambda x: _reductions.REDUCTIONS[name](sets, x).sum())(sets.x)
    assert out == 0 and grad.shape == (1, 0, D_IN)
    softmax = _reductions.set_softmax_sum(sets, sets.x, sets.x)
    np.testing.assert_array_equal(softmax, np.zeros((1, D_IN)))


def _softmax_sum(logits, values):
    p = np.exp(logits - logits.max(0))
    return (p / p.sum(0) * values).sum(0)


def test_softmax_aggregation_matches_numpy():
    agg = SoftmaxAggregation()
    assert init_variables(agg)["params"]["temperature"].shape == ()  # one shared t by default
    variables = {"params": {"temperature": jnp.asarray(2.0)}}
    x, mask = np.asarray(X, np.float64), np.asarray(MASK)
    expected = _numpy_per_set(lambda s: _softmax_sum(2.0 * s, s), x, mask, D_IN)
    close(jax.jit(agg.apply)(variables, X_NAN, MASK), expected)


def test_attention_pooling_matches_numpy():
    heads, dk = 2, 3
    agg = AttentionPooling(out_features=4, num_heads=heads, qk_features=heads * dk, v_features=4)
    variables = init_variables(agg)
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])

    def reference(s):
        k = np.einsum("nd,dhk->nhk", s, p["key"]["kernel"]) + p["key"]["bias"]
        v = np.einsum("nd,dhk->nhk", s, p["value"]["kernel"]) + p["value"]["bias"]
        logits = np.einsum("nhk,hk->nh", k, p["query"][0]) / np.sqrt(dk)
        o = np.stack([_softmax_sum(logits[:, h, None], v[:, h]) for h in range(heads)])
        return np.einsum("hk,hko->o", o, p["out"]["kernel"]) + p["out"]["bias"]

    x, mask = np.asarray(X, np.float64), np.asarray(MASK)
    expected = _numpy_per_set(reference, x, mask, 4)
    expected[~mask.any(1)] = p["out"]["bias"]  # an empty set pools to 0, then the output bias
    close(jax.jit(agg.apply)(variables, X_NAN, MASK), expected)


def test_pna_matches_numpy():
    delta = 0.9
    agg = PNA(avg_log_degree=delta, out_features=3, aggregators=("mean", "std"))
    variables = init_variables(agg)
    w, bias = (np.asarray(variables["params"]["out"][k], np.float64) for k in ("kernel", "bias"))
    x, mask = np.asarray(X, np.float64), np.asarray(MASK)

    def features(s):
        n = max(len(s), 1)  # PNA clamps the size in its scalers
        a = np.concatenate([s.mean(0), np.sqrt(s.var(0) + agg.std_eps)])
        return np.concatenate([a, a * np.log(n + 1) / delta, a * delta / np.log(n + 1)])

    expected = _numpy_per_set(features, x, mask, 6 * D_IN) @ w + bias
    close(jax.jit(agg.apply)(variables, X_NAN, MASK), expected)


def test_pna_degree_statistics():
    # mean(log 1, log 2, log 4) = log 2 exactly.
    assert pna_degree_statistics([0, 1, 3]) == pytest.approx(np.log(2), rel=1e-12)
    assert pna_degree_statistics(histogram=[1, 1, 0, 1]) == pytest.approx(np.log(2), rel=1e-12)
    assert pna_degree_statistics(np.full(7, 100)) == pytest.approx(np.log(101), rel=1e-12)
    with pytest.raises(ValueError, match="every set"):
        pna_degree_statistics([0, 0])
    with pytest.raises(ValueError, match="exactly one"):
        pna_degree_statistics()


# --- Bad input -----------------------------------------------------------------------------------


def test_bad_inputs_name_the_argument():
    agg = MeanAggregation()
    with pytest.raises(ValueError, match="mask has shape"):
        agg.apply({}, X, MASK[:, :3])
    with pytest.raises(ValueError, match="num_segments"):
        agg.apply({}, X[0], segment_ids=np.zeros(N, np.int32))
    with pytest.raises(TypeError, match="floating point"):
        agg.apply({}, np.ones((2, 3), np.int32))


@pytest.mark.parametrize(
    "module, match",
    [
        (AttentionPooling(out_features=10, num_heads=4), "AttentionPooling.out_features=10"),
        (AttentionPooling(out_features=8, qk_features=6), "AttentionPooling.qk_features=6"),
        (PMA(features=6, num_heads=4), "PMA.features=6"),
        (PNA(avg_log_degree=1.0, out_features=2, aggregators=("median",)), "PNA.aggregators"),
        (PNA(avg_log_degree=0.0, out_features=2), "PNA.avg_log_degree"),
        (DeepSets(phi_features=[4], pooling="median"), "DeepSets.pooling"),
    ],
)
def test_bad_hyperparameters_name_the_field(module, match):
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(module.init, jax.random.key(0), X)
