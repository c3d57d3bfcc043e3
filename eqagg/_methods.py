"""Method names -> (forward iteration, differentiation mode) with their options."""

from __future__ import annotations

from typing import Any

import solvers

METHODS = ("unrolled", "implicit", "truncated", "one_step")
SOLVERS = (
    "nesterov",
    "gradient_descent",
    "anderson",
    "fixed_point",
    "jaxopt_anderson",
    "accelerated_gd",
)

_ITERATIONS = {
    "nesterov": solvers.Nesterov,
    "gradient_descent": solvers.GradientDescent,
    "anderson": solvers.Anderson,
    "fixed_point": solvers.FixedPointIteration,
    "jaxopt_anderson": solvers.AndersonAcceleration,
    "accelerated_gd": solvers.AcceleratedGradientDescent,
}
_ITERATION_OPTIONS = {"step_size", "momentum", "max_steps", "steps", "tol", "history_size"}
_ADJOINT_OPTIONS = {
    "unrolled": {"checkpoint", "unroll"},
    "truncated": {"checkpoint", "k", "unroll"},
    "implicit": {
        "linear_solver",
        "linear_solver_tol",
        "linear_solver_maxiter",
        "ridge",
        "check_rtol",
    },
    "one_step": set(),
}
# Unrolled solves run a fixed, small number of steps (the paper uses 5-15); tolerance-based ones
# stop at `tol` and need a generous cap.
_DEFAULTS = {
    "unrolled": {"max_steps": 10, "tol": 1e-4},
    "truncated": {"max_steps": 20, "tol": 1e-4},
    "implicit": {"max_steps": 1000, "tol": 1e-5},
    "one_step": {"max_steps": 1000, "tol": 1e-5},
}
_ADJOINTS = {
    "unrolled": solvers.Unrolled,
    "truncated": solvers.Truncated,
    "implicit": solvers.Implicit,
    "one_step": solvers.OneStep,
}


def _adjoint_name(adjoint: solvers.Adjoint) -> str:
    for name, cls in _ADJOINTS.items():
        if isinstance(adjoint, cls):
            return name
    return "custom"


def resolve_method(
    method: str | solvers.Adjoint, solver: str | solvers.Iteration | None, options: dict[str, Any]
) -> tuple[solvers.Iteration, solvers.Adjoint]:
    """Builds the iteration and adjoint for ``method``/``solver`` names (or objects) and options.

    Raises:
      ValueError: unknown method or solver name.
      TypeError: options that the chosen method or solver does not take.
    """
    options = dict(options)
    if isinstance(method, solvers.Adjoint):
        adjoint, name = method, _adjoint_name(method)
        adjoint_options = set()
    elif isinstance(method, str) and method in METHODS:
        name = method
        adjoint_options = _ADJOINT_OPTIONS[name]
        adjoint = _ADJOINTS[name](**{k: options.pop(k) for k in adjoint_options if k in options})
    else:
        raise ValueError(
            f"method={method!r} is not known; use one of {METHODS} or a differentiation-mode object "
            "such as solvers.Implicit(linear_solver='gmres')."
        )
    if "steps" in options:
        if "max_steps" in options:
            raise TypeError("give either steps or max_steps (they are the same option), not both.")
        options["max_steps"] = options.pop("steps")
    iteration = _resolve_iteration(solver, name, options)
    unknown = set(options) - _ITERATION_OPTIONS
    if unknown:
        raise TypeError(
            f"solve_aggregation got unexpected options {sorted(unknown)} for method={name!r}; it "
            f"takes {sorted(_ITERATION_OPTIONS | adjoint_options)}."
        )
    return iteration, adjoint


def _resolve_iteration(
    solver: str | solvers.Iteration | None, method_name: str, options: dict[str, Any]
) -> solvers.Iteration:
    iteration_keys = _ITERATION_OPTIONS - {"steps"}
    given = {k: options.pop(k) for k in list(options) if k in iteration_keys}
    if isinstance(solver, solvers.Iteration):
        if given:
            raise TypeError(
                f"options {sorted(given)} were given together with a configured solver object; "
                f"set them on the object instead, e.g. solvers.Nesterov({next(iter(given))}=...)."
            )
        return solver
    solver = "nesterov" if solver is None else solver
    if solver not in _ITERATIONS:
        raise ValueError(
            f"solver={solver!r} is not known; use one of {SOLVERS} or an iteration object such "
            "as solvers.AndersonAcceleration(step_size=0.1)."
        )
    cls = _ITERATIONS[solver]
    fields = set(cls.__dataclass_fields__)
    bad = set(given) - fields
    if bad:
        raise TypeError(
            f"solver={solver!r} does not take {sorted(bad)}; it takes {sorted(fields)}."
        )
    kwargs = {
        k: v for k, v in _DEFAULTS.get(method_name, _DEFAULTS["implicit"]).items() if k in fields
    }
    kwargs.update(given)
    return cls(**kwargs)
