"""Equilibrium Aggregation: set and graph aggregation as differentiable energy minimisation.

Built on :mod:`solvers` (generic minimisation); this package adds sets, their layouts, energies and
Flax modules.
"""

from ._aggregate import AggregationResult as AggregationResult
from ._aggregate import auxiliary_loss as auxiliary_loss
from ._aggregate import solve_aggregation as solve_aggregation
from ._attention_pooling import PMA as PMA
from ._attention_pooling import AttentionPooling as AttentionPooling
from ._baselines import DeepSets as DeepSets
from ._baselines import MaxAggregation as MaxAggregation
from ._baselines import MeanAggregation as MeanAggregation
from ._baselines import SoftmaxAggregation as SoftmaxAggregation
from ._baselines import SumAggregation as SumAggregation
from ._energies import SCALINGS as SCALINGS
from ._energies import EnergySpec as EnergySpec
from ._energies import attention_energy as attention_energy
from ._energies import max_energy as max_energy
from ._energies import mean_energy as mean_energy
from ._energies import median_energy as median_energy
from ._energies import sum_energy as sum_energy
from ._methods import METHODS as METHODS
from ._methods import SOLVERS as SOLVERS
from ._module import DIAGNOSTICS as DIAGNOSTICS
from ._module import EquilibriumAggregation as EquilibriumAggregation
from ._module import collect_auxiliary_loss as collect_auxiliary_loss
from ._module import diagnostics_of as diagnostics_of
from ._module import equilibrium_aggregate as equilibrium_aggregate
from ._pna import PNA as PNA
from ._pna import pna_degree_statistics as pna_degree_statistics
from ._potential import init_resnet_potential as init_resnet_potential
from ._potential import project_elements as project_elements
from ._potential import resnet_potential as resnet_potential
from ._set_module import SetAggregator as SetAggregator
from ._set_module import as_segment_fn as as_segment_fn
from ._xla import cpu_compiler_options as cpu_compiler_options

__all__ = [
    "cpu_compiler_options",
    "PMA",
    "AttentionPooling",
    "DeepSets",
    "MaxAggregation",
    "MeanAggregation",
    "SoftmaxAggregation",
    "SumAggregation",
    "PNA",
    "pna_degree_statistics",
    "SetAggregator",
    "as_segment_fn",
    "DIAGNOSTICS",
    "EquilibriumAggregation",
    "collect_auxiliary_loss",
    "diagnostics_of",
    "equilibrium_aggregate",
    "init_resnet_potential",
    "project_elements",
    "resnet_potential",
    "METHODS",
    "SCALINGS",
    "SOLVERS",
    "AggregationResult",
    "EnergySpec",
    "attention_energy",
    "auxiliary_loss",
    "max_energy",
    "mean_energy",
    "median_energy",
    "solve_aggregation",
    "sum_energy",
]
