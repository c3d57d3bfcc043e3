"""Differentiable minimisation of ``E(y, args)`` in JAX.

Generic and knows nothing about sets: :func:`minimise` pairs a forward iteration (how ``y*`` is
found) with a differentiation mode (how ``dy*/dargs`` is computed).
"""

from ._adjoint import Adjoint as Adjoint
from ._adjoint import Implicit as Implicit
from ._adjoint import OneStep as OneStep
from ._adjoint import Truncated as Truncated
from ._adjoint import Unrolled as Unrolled
from ._iterations import Anderson as Anderson
from ._iterations import GradientDescent as GradientDescent
from ._iterations import Iteration as Iteration
from ._iterations import Nesterov as Nesterov
from ._jaxopt_backend import AcceleratedGradientDescent as AcceleratedGradientDescent
from ._jaxopt_backend import AndersonAcceleration as AndersonAcceleration
from ._jaxopt_backend import FixedPointIteration as FixedPointIteration
from ._linear_solve import LINEAR_SOLVERS as LINEAR_SOLVERS
from ._minimise import minimise as minimise
from ._report import ConvergenceWarning as ConvergenceWarning
from ._report import NonConvergenceError as NonConvergenceError
from ._report import record_backward_residuals as record_backward_residuals
from ._solution import Solution as Solution

__all__ = [
    "AcceleratedGradientDescent",
    "Adjoint",
    "AndersonAcceleration",
    "ConvergenceWarning",
    "FixedPointIteration",
    "GradientDescent",
    "Implicit",
    "Iteration",
    "LINEAR_SOLVERS",
    "Nesterov",
    "Anderson",
    "NonConvergenceError",
    "OneStep",
    "Solution",
    "Truncated",
    "Unrolled",
    "minimise",
    "record_backward_residuals",
]
