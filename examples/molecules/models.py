"""GCN and GIN for molecules, as OGB's reference models, with a selectable global readout.

The node model follows OGB's ``examples/graphproppred/mol`` (``conv.py``, ``gnn.py``): an
:class:`AtomEncoder` (sum of one embedding per categorical atom feature), ``num_layers`` convolutions
that embed bonds with a :class:`BondEncoder`, each followed by batch norm, ReLU (not after the last
layer) and dropout, optionally a virtual node; then a global readout of the node embeddings and a
linear head to one logit per task. Messages are sent along ``senders -> receivers`` and reduced per
receiver with segment operations, as jraph does.

What varies in the paper's Table (section 5.3) is the readout: ``sum`` (OGB's ``global_add_pool``),
``mean``, ``attention`` (multi-head attention with a learned query, the paper's MHA), ``pna`` or
``ea`` (Equilibrium Aggregation). ``local_aggregation="ea"`` also replaces the sum over incoming
edge messages inside every convolution by Equilibrium Aggregation ("EA local + EA global").

All readouts come from :mod:`eqagg` and share its call convention, so the readout of a padded jraph
batch is ``readout(nodes, segment_ids=node_graph, num_segments=n_graph)`` and the local aggregation
is ``aggregate(messages, segment_ids=receivers, num_segments=n_node)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph
from jax import Array

import eqagg

from .features import get_atom_feature_dims, get_bond_feature_dims

GNN_TYPES = ("gcn", "gin")
READOUTS = ("sum", "mean", "attention", "pna", "ea")
LOCAL_AGGREGATIONS = ("sum", "ea")

# PyTorch's BatchNorm1d defaults (OGB's models): running averages with momentum 0.1, eps 1e-5.
_BN_MOMENTUM = 0.9
_BN_EPSILON = 1e-5


def _check_choice(field: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(
            f"MoleculeGNN.{field}={value!r} is not supported; choose one of {allowed}."
        )


def node_graph_index(graphs: jraph.GraphsTuple) -> Array:
    """``int32[n_node]``: the graph of every node of a (padded) batch, the jraph segment ids."""
    n_graph = graphs.n_node.shape[0]
    return jnp.repeat(jnp.arange(n_graph), graphs.n_node, total_repeat_length=graphs.nodes.shape[0])


class CategoricalEncoder(nn.Module):
    """Sum of one learned embedding per categorical feature column (OGB's Atom/BondEncoder).

    Attributes:
      feature_dims: the number of categories of each column (its embedding-table size).
      features: the embedding width.
    """

    feature_dims: Sequence[int]
    features: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Embeds ``int[n, len(feature_dims)]`` indices -> ``float32[n, features]``."""
        if x.shape[-1] != len(self.feature_dims):
            raise ValueError(
                f"{type(self).__name__} expects {len(self.feature_dims)} feature columns; got "
                f"input of shape {x.shape}."
            )
        init = nn.initializers.xavier_uniform()  # OGB's AtomEncoder/BondEncoder initialisation
        return sum(
            nn.Embed(dim, self.features, embedding_init=init, name=f"embed_{k}")(x[..., k])
            for k, dim in enumerate(self.feature_dims)
        )


def AtomEncoder(features: int, name: str | None = None) -> CategoricalEncoder:  # noqa: N802
    """OGB's ``AtomEncoder``: one embedding per atom feature of :mod:`.features`, summed."""
    return CategoricalEncoder(tuple(get_atom_feature_dims()), features, name=name)


def BondEncoder(features: int, name: str | None = None) -> CategoricalEncoder:  # noqa: N802
    """OGB's ``BondEncoder``: one embedding per bond feature of :mod:`.features`, summed."""
    return CategoricalEncoder(tuple(get_bond_feature_dims()), features, name=name)


@dataclasses.dataclass(frozen=True)
class AggregatorConfig:
    """Hyper-parameters of the :mod:`eqagg` aggregators used as readout or local aggregation.

    Attributes:
      ea_steps: inner Nesterov steps of Equilibrium Aggregation (the paper: 15 on MOLPCBA).
      ea_hidden: widths of the EA potential's hidden layers (Appendix C.1: a two-layer ResNet).
      ea_method: how EA is differentiated (``"unrolled"`` as in the paper; see
        :class:`eqagg.EquilibriumAggregation`).
      attention_heads: heads of the attention readout (the paper's MHA: 4).
      pna_avg_log_degree: ``delta`` of PNA, :func:`eqagg.pna_degree_statistics` of the training
        graphs' sizes; needed only for ``readout="pna"``.
    """

    ea_steps: int = 15
    ea_hidden: tuple[int, ...] = (300, 300)
    ea_method: str = "unrolled"
    attention_heads: int = 4
    pna_avg_log_degree: float | None = None


def make_aggregator(
    kind: str, features: int, settings: AggregatorConfig, name: str | None = None
) -> nn.Module:
    """Returns the :mod:`eqagg` aggregator ``kind`` with output width ``features``.

    Args:
      kind: one of :data:`READOUTS`.
      features: the output width (``sum`` and ``mean`` keep their input's width).
      settings: the aggregators' hyper-parameters.
      name: the submodule's name.
    """
    if kind == "sum":
        return eqagg.SumAggregation(name=name)
    if kind == "mean":
        return eqagg.MeanAggregation(name=name)
    if kind == "attention":
        return eqagg.AttentionPooling(
            out_features=features, num_heads=settings.attention_heads, name=name
        )
    if kind == "pna":
        delta = settings.pna_avg_log_degree
        if delta is None:
            raise ValueError(
                "readout 'pna' needs AggregatorConfig(pna_avg_log_degree=...): compute it with "
                "eqagg.pna_degree_statistics(dataset.n_node[train_indices])."
            )
        return eqagg.PNA(avg_log_degree=delta, out_features=features, name=name)
    if kind == "ea":
        return eqagg.EquilibriumAggregation(
            features=features,
            hidden=tuple(settings.ea_hidden),
            steps=settings.ea_steps,
            method=settings.ea_method,
            name=name,
        )
    raise ValueError(f"Unknown aggregator {kind!r}; choose one of {READOUTS}.")


class GINConv(nn.Module):
    """OGB's GIN convolution: ``h_i' = MLP((1 + eps) h_i + A_{j -> i} relu(h_j + e_ji))``.

    ``A`` is the sum over incoming edges (OGB) or Equilibrium Aggregation. The MLP is
    ``Dense(2d) -> BatchNorm -> ReLU -> Dense(d)``, ``eps`` is learned and starts at 0.
    """

    features: int
    local_aggregation: str = "sum"
    settings: AggregatorConfig = AggregatorConfig()

    @nn.compact
    def __call__(
        self, h: Array, graphs: jraph.GraphsTuple, node_mask: Array | None, *, train: bool
    ) -> Array:
        n_node = h.shape[0]
        edges = BondEncoder(self.features, name="bond_encoder")(graphs.edges)
        messages = nn.relu(h[graphs.senders] + edges)
        aggregated = _aggregate_messages(
            messages, graphs.receivers, n_node, node_mask, self.local_aggregation, self.settings
        )
        eps = self.param("eps", nn.initializers.zeros, ())
        x = (1.0 + eps) * h + aggregated
        x = nn.Dense(2 * self.features, name="mlp_dense_0")(x)
        x = _batch_norm("mlp_batch_norm", x, node_mask, train)
        return nn.Dense(self.features, name="mlp_dense_1")(nn.relu(x))


class GCNConv(nn.Module):
    """OGB's GCN convolution with bond features and a learned root embedding.

    ``x = W h + b``; ``h_i' = A_{j -> i} [relu(x_j + e_ji) / sqrt(deg_i deg_j)] + relu(x_i + r) /
    deg_i`` with ``deg`` the out-degree plus one (a self loop), ``r`` a learned vector and ``A``
    the sum over incoming edges (OGB) or Equilibrium Aggregation of the normalised messages.
    """

    features: int
    local_aggregation: str = "sum"
    settings: AggregatorConfig = AggregatorConfig()

    @nn.compact
    def __call__(
        self, h: Array, graphs: jraph.GraphsTuple, node_mask: Array | None, *, train: bool
    ) -> Array:
        del train  # no batch norm inside; kept for the common convolution signature
        n_node = h.shape[0]
        x = nn.Dense(self.features, name="linear")(h)
        edges = BondEncoder(self.features, name="bond_encoder")(graphs.edges)
        ones = jnp.ones(graphs.senders.shape, x.dtype)
        deg = jraph.segment_sum(ones, graphs.senders, n_node) + 1.0
        inv_sqrt = jnp.reciprocal(jnp.sqrt(deg))
        norm = inv_sqrt[graphs.senders] * inv_sqrt[graphs.receivers]
        messages = norm[:, None] * nn.relu(x[graphs.senders] + edges)
        aggregated = _aggregate_messages(
            messages, graphs.receivers, n_node, node_mask, self.local_aggregation, self.settings
        )
        root = self.param("root_emb", nn.initializers.normal(1.0), (self.features,))
        return aggregated + nn.relu(x + root) / deg[:, None]


def _aggregate_messages(
    messages: Array,
    receivers: Array,
    n_node: int,
    node_mask: Array | None,
    kind: str,
    settings: AggregatorConfig,
) -> Array:
    """Reduces edge messages at their receivers: a segment sum (OGB), or an :mod:`eqagg` module.

    Messages to padding nodes are zeroed first: ``jraph.pad_with_graphs`` points every padding edge
    at one padding node, whose sum would otherwise grow by the number of padding edges per layer
    (overflowing float32 after a few layers; NaN there would leak into the gradients). Called from
    a compact method, so a submodule built here belongs to the calling convolution.
    """
    if node_mask is not None:
        keep = node_mask[receivers]
        messages = jnp.where(keep[:, None], messages, 0.0)
        receivers = _exclude_padding(receivers, keep, n_node)
    if kind == "sum":
        return jraph.segment_sum(messages, receivers, n_node)
    aggregator = make_aggregator(kind, messages.shape[-1], settings, "local_aggregation")
    return aggregator(messages, segment_ids=receivers, num_segments=n_node)


def _exclude_padding(segment_ids: Array, keep: Array | None, num_segments: int) -> Array:
    """Gives the rows not to ``keep`` the out-of-range id ``num_segments``, which aggregators skip.

    Why: ``jraph.pad_with_graphs`` puts every padding node in one padding graph and points every
    padding edge at one padding node, so that set has hundreds or thousands of (zero) elements.
    Equilibrium Aggregation's energy grows with the set size, and on that set its inner solve can
    diverge at step sizes that are stable on real molecules; the NaN would reach the gradients
    (0 * NaN) and the auxiliary loss would be dominated by it. Excluded, the padding sets are empty.

    Only under a trace (``jit``, as in training and evaluation): :mod:`eqagg` rejects out-of-range
    ids it can see, so an eager call (e.g. ``model.init`` outside ``jit``) keeps jraph's padding
    segment, which is harmless at initialisation.
    """
    if keep is None or not isinstance(segment_ids, jax.core.Tracer):
        return segment_ids
    return jnp.where(keep, segment_ids, num_segments)


def _zero_padding(x: Array, mask: Array | None) -> Array:
    """Zeroes the rows of padding nodes, so that sums over a padding graph stay bounded."""
    return x if mask is None else jnp.where(mask[:, None], x, 0.0)


def _batch_norm(name: str, x: Array, mask: Array | None, train: bool) -> Array:
    """Batch norm over the rows of ``x`` whose ``mask`` is True (padding stays out of the stats)."""
    bn = nn.BatchNorm(
        use_running_average=not train, momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON, name=name
    )
    return bn(x, mask=None if mask is None else mask[:, None])


def _virtual_node_mlp(name: str, x: Array, graph_mask: Array | None, train: bool) -> Array:
    """OGB's virtual-node MLP: ``Dense(2d) BN ReLU Dense(d) BN ReLU``."""
    d = x.shape[-1]
    x = nn.Dense(2 * d, name=f"{name}_dense_0")(x)
    x = nn.relu(_batch_norm(f"{name}_batch_norm_0", x, graph_mask, train))
    x = nn.Dense(d, name=f"{name}_dense_1")(x)
    return nn.relu(_batch_norm(f"{name}_batch_norm_1", x, graph_mask, train))


class MoleculeGNN(nn.Module):
    """OGB's GCN/GIN graph-property model with a selectable readout (paper section 5.3).

    ``h^0 = AtomEncoder(x)``; for each layer ``l``: ``h^{l+1} = Dropout(act(BN(Conv(h^l))))``
    with ``act = ReLU`` except after the last layer; the graph embedding is
    ``readout({h^L_i : i in graph})`` and the logits ``W g + b``. With ``virtual_node`` a per-graph
    vector (starting at 0) is added to every node before each convolution and updated from the
    sum of the node embeddings by an MLP, as OGB's ``GNN_node_Virtualnode`` (without residuals).

    Padding: nodes and edges of padding graphs never reach real graphs (edges stay within a
    graph), readouts work per graph, and with ``graph_mask`` the batch statistics of every batch
    norm skip padding rows; in eval mode the logits of real graphs therefore do not depend on the
    padding at all.

    Attributes:
      num_tasks: logits per graph.
      gnn_type: ``"gcn"`` or ``"gin"``.
      num_layers: message-passing layers (OGB: 5; at least 2).
      features: node embedding width (OGB: 300).
      dropout_rate: dropout after every layer (OGB: 0.5).
      virtual_node: add OGB's virtual node.
      readout: one of :data:`READOUTS`.
      local_aggregation: ``"sum"`` (OGB) or ``"ea"`` over incoming edge messages.
      aggregators: hyper-parameters of the EA, attention and PNA aggregators.

    Example:
      >>> import jax, jax.numpy as jnp, jraph, numpy as np
      >>> g = jraph.GraphsTuple(nodes=np.zeros((3, 9), np.int32), edges=np.zeros((4, 3), np.int32),
      ...     senders=np.array([0, 1, 1, 2]), receivers=np.array([1, 0, 2, 1]),
      ...     n_node=np.array([3]), n_edge=np.array([4]), globals=None)
      >>> model = MoleculeGNN(num_tasks=12, gnn_type="gin", num_layers=2, features=16)
      >>> variables = model.init(jax.random.key(0), g, train=False)
      >>> model.apply(variables, g, train=False).shape
      (1, 12)
    """

    num_tasks: int
    gnn_type: str = "gin"
    num_layers: int = 5
    features: int = 300
    dropout_rate: float = 0.5
    virtual_node: bool = False
    readout: str = "sum"
    local_aggregation: str = "sum"
    aggregators: AggregatorConfig = AggregatorConfig()

    def _check(self) -> None:
        _check_choice("gnn_type", self.gnn_type, GNN_TYPES)
        _check_choice("readout", self.readout, READOUTS)
        _check_choice("local_aggregation", self.local_aggregation, LOCAL_AGGREGATIONS)
        if self.num_layers < 2:
            raise ValueError(
                f"MoleculeGNN.num_layers must be >= 2 (as OGB's GNN); got {self.num_layers}."
            )

    @nn.compact
    def __call__(
        self, graphs: jraph.GraphsTuple, graph_mask: Array | None = None, *, train: bool
    ) -> Array:
        """Returns ``float32[n_graph, num_tasks]`` logits of a padded batch.

        Args:
          graphs: ``nodes int[n_node, 9]`` atom and ``edges int[n_edge, 3]`` bond feature indices
            (:mod:`.features`), ``senders``/``receivers``, ``n_node``/``n_edge`` per graph.
          graph_mask: optional ``bool[n_graph]``, True for real graphs; keeps padding out of the
            batch statistics in training (without it every graph counts).
          train: batch statistics and dropout (needs the ``"dropout"`` RNG) instead of running
            averages and no dropout.
        """
        self._check()
        n_graph = graphs.n_node.shape[0]
        node_graph = node_graph_index(graphs)
        node_mask = None if graph_mask is None else jnp.asarray(graph_mask)[node_graph]
        conv_type = GINConv if self.gnn_type == "gin" else GCNConv
        h = _zero_padding(AtomEncoder(self.features, name="atom_encoder")(graphs.nodes), node_mask)
        if self.virtual_node:
            vn0 = self.param("virtual_node_embedding", nn.initializers.zeros, (self.features,))
            vn = jnp.broadcast_to(vn0, (n_graph, self.features))
        for layer in range(self.num_layers):
            if self.virtual_node:
                h = h + vn[node_graph]
            conv = conv_type(
                self.features, self.local_aggregation, self.aggregators, name=f"conv_{layer}"
            )
            x = conv(h, graphs, node_mask, train=train)
            x = _batch_norm(f"batch_norm_{layer}", x, node_mask, train)
            if layer < self.num_layers - 1:
                x = nn.relu(x)
            x = _zero_padding(nn.Dropout(self.dropout_rate, deterministic=not train)(x), node_mask)
            if self.virtual_node and layer < self.num_layers - 1:
                pooled = jraph.segment_sum(h, node_graph, n_graph) + vn
                vn = _virtual_node_mlp(f"virtual_node_mlp_{layer}", pooled, graph_mask, train)
                vn = nn.Dropout(self.dropout_rate, deterministic=not train)(vn)
            h = x
        readout = make_aggregator(self.readout, self.features, self.aggregators, "readout")
        pooled = readout(
            h, segment_ids=_exclude_padding(node_graph, node_mask, n_graph), num_segments=n_graph
        )
        return nn.Dense(self.num_tasks, name="head")(pooled)
