"""MF-Hartmann 3-D and 6-D, as in mfpbench (the PriorBand benchmark suite).

The Hartmann functions (Dixon & Szegoe 1978; constants as in Surjanovic & Bingham's
Virtual Library of Simulation Experiments) on [0, 1]^d,

    f(x) = -sum_i alpha_i exp(-sum_j A_ij (x_j - P_ij)^2),

get a fidelity as in mfpbench (`mfpbench/synthetic/hartmann/generators.py`): the weights
shrink at low fidelity, `alpha'_i = alpha_i - bias (1 - s)` with `s = log(z) / log(100)`,
which flattens the function, and half-normal noise of scale `noise (1 - s)` is added.
At z = 100 the function is the plain Hartmann function.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxnas.problems._problem import Problem, check_choice, check_scale

# mfpbench's presets (bias, noise), from its MFHartmann{3,6}Benchmark{Good,...} classes:
# "default" is the plain benchmark; the others are ordered by how badly low fidelities
# rank configurations.
HARTMANN_PRESETS = {
    "default": (0.5, 0.1),
    "good": (2.5, 2.0),
    "moderate": (3.0, 3.0),
    "bad": (3.5, 4.0),
    "terrible": (4.0, 5.0),
}
HARTMANN_DIMS = (3, 6)

_ALPHA = (1.0, 1.2, 3.0, 3.2)
_A3 = ((3.0, 10.0, 30.0), (0.1, 10.0, 35.0), (3.0, 10.0, 30.0), (0.1, 10.0, 35.0))
_P3 = ((3689, 1170, 2673), (4699, 4387, 7470), (1091, 8732, 5547), (381, 5743, 8828))
_A6 = (
    (10.0, 3.0, 17.0, 3.5, 1.7, 8.0),
    (0.05, 10.0, 17.0, 0.1, 8.0, 14.0),
    (3.0, 3.5, 1.7, 10.0, 17.0, 8.0),
    (17.0, 8.0, 0.05, 10.0, 0.1, 14.0),
)
_P6 = (
    (1312, 1696, 5569, 124, 8283, 5886),
    (2329, 4135, 8307, 3736, 1004, 9991),
    (2348, 1451, 3522, 2883, 3047, 6650),
    (4047, 8828, 8732, 5743, 1091, 381),
)
# Published global minimisers (mfpbench's `optimum`); f = -3.86278 and -3.32237.
_MINIMIZERS = {
    3: (0.114614, 0.555649, 0.852547),
    6: (0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573),
}


def _hartmann(x: jax.Array, s: jax.Array, bias: float, a: tuple, p: tuple) -> jax.Array:
    alpha = jnp.asarray(_ALPHA, jnp.float32) - bias * (1.0 - s)  # flattens at low fidelity
    centres = 1e-4 * jnp.asarray(p, jnp.float32)
    inner = jnp.sum(jnp.asarray(a, jnp.float32) * (x - centres) ** 2, axis=-1)
    return -jnp.sum(alpha * jnp.exp(-inner))


def hartmann3(x: jax.Array, s: jax.Array, bias: float) -> jax.Array:
    """Noiseless MF-Hartmann-3 at x (3,) and scaled fidelity s; float32 scalar."""
    return _hartmann(x, s, bias, _A3, _P3)


def hartmann6(x: jax.Array, s: jax.Array, bias: float) -> jax.Array:
    """Noiseless MF-Hartmann-6 at x (6,) and scaled fidelity s; float32 scalar."""
    return _hartmann(x, s, bias, _A6, _P6)


def mf_hartmann(dim: int = 3, preset: str = "default", *, bias: float | None = None,
                noise: float | None = None) -> Problem:
    """The multi-fidelity Hartmann function of mfpbench, on [0, 1]^dim with z in 1..100.

    Args:
        dim: 3 or 6.
        preset: mfpbench's (bias, noise) setting: "default" (0.5, 0.1), "good"
            (2.5, 2.0), "moderate" (3.0, 3.0), "bad" (3.5, 4.0) or "terrible" (4.0, 5.0).
        bias: Overrides the preset's bias (>= 0).
        noise: Overrides the preset's noise scale (>= 0).

    Returns:
        The `Problem`; its optimum is -3.86278 (dim 3) or -3.32237 (dim 6).

    Raises:
        ValueError: an unknown dim or preset, or a negative bias or noise.

    Example:
        >>> p = mf_hartmann(dim=6, preset="terrible")
        >>> spec = jaxnas.compile(p.space(prior="good"))
        >>> loss = p.evaluate(p.argmin, 100, jax.random.key(0))  # == p.optimum
    """
    check_choice("mf_hartmann", "dim", dim, HARTMANN_DIMS)
    check_choice("mf_hartmann", "preset", preset, tuple(HARTMANN_PRESETS))
    dim = int(dim)  # 3.0 passes the check; names and shapes want an int
    preset_bias, preset_noise = HARTMANN_PRESETS[preset]
    bias = preset_bias if bias is None else check_scale("mf_hartmann", "bias", bias)
    noise = preset_noise if noise is None else check_scale("mf_hartmann", "noise", noise)
    return Problem(
        name=f"mf_hartmann{dim}(preset={preset!r}, bias={bias}, noise={noise})",
        objective=hartmann3 if dim == 3 else hartmann6,
        lower=(0.0,) * dim,
        upper=(1.0,) * dim,
        minimizers=(_MINIMIZERS[dim],),
        bias=bias,
        noise=noise,
    )
