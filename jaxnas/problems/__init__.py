"""Pure, vmappable multi-fidelity test problems with known optima and priors.

The PriorBand benchmark suite's MF-Hartmann (mfpbench), a multi-fidelity Branin and
MF-Mixed (floats, log scales, integers, categoricals and conditional branches), each with
priors of known quality ("good", "medium", "at25", "bad"):

    >>> from jaxnas import problems
    >>> p = problems.mf_hartmann(dim=3, preset="default")
    >>> spec = jaxnas.compile(p.space(prior="good", confidence="medium"))
    >>> losses = jax.vmap(p.evaluate)(configs, fidelities, keys)
    >>> p.regret(losses)
"""

from jaxnas.problems._branin import mf_branin
from jaxnas.problems._hartmann import HARTMANN_DIMS, HARTMANN_PRESETS, mf_hartmann
from jaxnas.problems._mixed import MixedProblem, mf_mixed
from jaxnas.problems._problem import (
    FIDELITY_LOWER,
    FIDELITY_NAME,
    FIDELITY_UPPER,
    PRIOR_CONFIDENCES,
    PRIOR_NAMES,
    Problem,
)

__all__ = [
    "FIDELITY_LOWER",
    "FIDELITY_NAME",
    "FIDELITY_UPPER",
    "HARTMANN_DIMS",
    "HARTMANN_PRESETS",
    "MixedProblem",
    "PRIOR_CONFIDENCES",
    "PRIOR_NAMES",
    "Problem",
    "mf_branin",
    "mf_hartmann",
    "mf_mixed",
]
