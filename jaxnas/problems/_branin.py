"""MF-Branin: the Branin function with the fidelity of Kandasamy et al. (2017).

Branin on [-5, 10] x [0, 15],

    f(x) = (x1 - b x0^2 + c x0 - r)^2 + q (1 - t) cos(x0) + q,

with b = 5.1 / (4 pi^2), c = 5 / pi, r = 6, q = 10, t = 1 / (8 pi), has three global
minima, f = 0.397887, at (-pi, 12.275), (pi, 2.275) and (9.42478, 2.475). The
multi-fidelity version of Kandasamy et al. ("Multi-fidelity Bayesian Optimisation with
Continuous Approximations", ICML 2017; their Dragonfly code, `branin_z_x`) shifts three
constants at low fidelity: b - 0.01 (1 - s), c - 0.1 (1 - s), t + 0.005 (1 - s).
Kandasamy et al. use a separate fidelity per constant, linear in [0, 1]; here one fidelity
z in 1..100 drives all three through the same `s = log(z) / log(100)` as MF-Hartmann,
with the same noise model and cost.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxnas.problems._problem import Problem, check_scale

_B = 5.1 / (4 * math.pi**2)
_C = 5 / math.pi
_T = 1 / (8 * math.pi)
_MINIMIZERS = ((math.pi, 2.275), (-math.pi, 12.275), (9.42478, 2.475))


def branin(x: jax.Array, s: jax.Array, bias: float) -> jax.Array:
    """Noiseless MF-Branin at x (2,) and scaled fidelity s; float32 scalar.

    `bias` scales Kandasamy et al.'s shifts (1 reproduces them).
    """
    gap = bias * (1.0 - s)
    b = _B - 0.01 * gap
    c = _C - 0.1 * gap
    t = _T + 0.005 * gap
    x0, x1 = x[0], x[1]
    return (x1 - b * x0**2 + c * x0 - 6.0) ** 2 + 10.0 * (1.0 - t) * jnp.cos(x0) + 10.0


def mf_branin(*, bias: float = 1.0, noise: float = 0.0) -> Problem:
    """The multi-fidelity Branin function on [-5, 10] x [0, 15] with z in 1..100.

    Args:
        bias: Scale of Kandasamy et al.'s low-fidelity shifts (>= 0; 1 is theirs).
        noise: Scale of the half-normal noise at the lowest fidelity (>= 0).

    Returns:
        The `Problem`; its optimum is 0.397887, `argmin` is (pi, 2.275), and
        `minimizers` lists all three global minimisers.

    Raises:
        ValueError: a negative bias or noise.
    """
    bias = check_scale("mf_branin", "bias", bias)
    noise = check_scale("mf_branin", "noise", noise)
    return Problem(
        name=f"mf_branin(bias={bias}, noise={noise})",
        objective=branin,
        lower=(-5.0, 0.0),
        upper=(10.0, 15.0),
        minimizers=_MINIMIZERS,
        bias=bias,
        noise=noise,
    )
