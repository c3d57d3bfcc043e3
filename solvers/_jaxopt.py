"""The one place jaxopt is imported. jaxopt is archived upstream; we use a few of its solvers behind
our own interfaces, so its deprecation notice is not repeated to our users on every import."""

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message="JAXopt is no longer maintained", category=DeprecationWarning
    )
    import jaxopt
    from jaxopt.implicit_diff import custom_root

__all__ = ["custom_root", "jaxopt"]
