"""A Gaussian process on the unit encoding of mixed, conditional configurations (public: the
model of `bayesian_optimization` and `priorband_bo`, usable on its own).

The model of `bayesian_optimization` and `priorband_bo`, written for fixed shapes: it holds
`M` rows, of which a mask says which are observations, so that a search of any length
compiles one program (a masked row is an identity row of the kernel matrix with target 0,
which leaves the marginal likelihood and the posterior of the others exactly unchanged).

Kernel (as Optuna's `GPSampler`, `optuna/_gp/gp.py`): Matérn-5/2 with one inverse squared
lengthscale per slot (ARD), times a kernel scale, plus noise:
`k(x, x') = scale * matern52(sqrt(sum_d theta_d * delta_d(x, x')**2))`, where `delta_d` is
the difference of unit values for a number and the Hamming distance (0 or 1) for a
categorical. Conditional slots are handled explicitly: a slot neither configuration uses
is no difference (0), a slot only one of them uses is the largest (1).

Hyperparameters maximise the marginal likelihood times Optuna's default prior
(`optuna/_gp/prior.py`: a `-(0.1 / theta + 0.1 * theta)` penalty per lengthscale,
Gamma(2, 1) on the scale, Gamma(1.1, 30) on the noise, noise at least 1e-6), by L-BFGS
(`optax.lbfgs`) from a given start (Optuna's values by default; `bayesian_optimization`
starts each fit where the last ended, as Optuna's `GPSampler` does), on targets
standardised to mean 0, variance 1.
Rasmussen & Williams, "Gaussian Processes for Machine Learning", 2006, Alg. 2.1 (the
Cholesky solve and the marginal likelihood).

Everything is float64 (as Optuna's), whatever the program around it: each public function
traces in JAX's 64-bit mode (`float64()`) and takes float32 inputs; `bayesian_optimization`
traces its whole proposal so (`call_in_float64`) and hands back float32. In float32 a
model fitted near an optimum is wrong where it matters: a posterior variance is the
prior's (the kernel scale, ~6) minus the explained part, so a variance of 1e-6 needs more
digits than float32 has, and the kernel matrix's condition number (scale / noise, ~1e7)
takes the rest (on Branin after 45 evaluations the posterior standard deviation at the
incumbent's neighbours came out at its floor, and log EI never proposed there again;
development seeds 0-39 at 50 evaluations: P(beats Optuna's GP) 0.29 in float32, 0.49 in
float64). Solves go through the Cholesky factor (its inverse `W`, `K^-1 = W^T W`), never
an explicit `K^-1`.

No GP library is used: tinygp and GPJax fit the kernel, but neither masks rows of a
fixed-size training set nor mixes Hamming and Matérn distances with activity masks without
a custom kernel and a custom solve, which are most of this module.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import math
import os
import sys
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.custom_batching import custom_vmap
from jax.scipy.special import log_ndtr

DTYPE = jnp.float64  # the model's arithmetic (see the module docstring)
MIN_NOISE = 1e-6  # Optuna's `DEFAULT_MINIMUM_NOISE_VAR`
# Where the Cholesky factorisation fails (many rows at one point make the kernel matrix
# singular but for the noise), FALLBACK_JITTER times the rows times the largest diagonal
# entry is added, which bounds the condition number by 1 / FALLBACK_JITTER whatever the
# kernel scale and the data (the largest eigenvalue is at most rows x that entry).
FALLBACK_JITTER = 1e-6
# Fitted parameters are clipped to [-12, 12] (their exponentials stay finite), the noise's
# log above MIN_NOISE to [-30, 12]: Optuna's fitted noise sits at its floor on smooth
# functions (1e-6 + 1e-11 on Branin), and a floor of exp(-12) = 6e-6 above it smoothed
# over the last digits of a search near an optimum.
_LOG_NOISE_FLOOR = -30.0
FIT_STEPS = 25  # L-BFGS iterations (each a line search of a few likelihood evaluations)
# `bayesian_optimization`'s fits stop where the gradient's largest entry is at most this:
# Optuna's test (scipy's L-BFGS-B `gtol`, 1e-2 in `fit_kernel_params`). In float32 (the
# model's arithmetic until 2026-12-06) the objective was too rough near its minimum for it
# (the gradient stayed above 0.5 after 100 iterations on a smooth function's 128 rows), so
# fits stopped at the first iteration that did not improve the value; in float64 that
# test ran nearly every fit to FIT_STEPS (11.0 ms a trial at 200 trials of Hartmann-6,
# against 8.6 ms with this one; warm-started fits take a median of 12 iterations), with
# the same regret on development seeds (Branin at 50 evaluations, P(beats Optuna's GP)
# 0.43 and 0.58 on seeds 0-39 and 40-79, against 0.49 and 0.44).
FIT_TOLERANCE = 1e-2
_LINE_SEARCH_STEPS = 8
_LOG_2PI = math.log(2.0 * math.pi)


def _missing() -> str | None:
    """What the installed JAX or optax lacks for the model (None: nothing): JAX's scoped
    64-bit mode inside traced loops (`jax.enable_x64`, jax >= 0.8.0; with 0.5.3-0.7.2's
    `jax.experimental.enable_x64` a fit's L-BFGS fails to lower) and `optax.lbfgs`
    (optax >= 0.2.3)."""
    if not hasattr(jax, "enable_x64"):
        return (f"jax >= 0.8.0 (JAX's scoped 64-bit mode, jax.enable_x64); this is jax "
                f"{jax.__version__}. Upgrade jax")
    if not hasattr(optax, "lbfgs"):
        return f"optax >= 0.2.3 (optax.lbfgs); this is optax {optax.__version__}. Upgrade optax"
    return None


def supported() -> bool:
    """Whether the installed JAX and optax can run the model (see `check_supported`)."""
    return _missing() is None


def check_supported(owner: str) -> None:
    """Raises, naming the version needed, where the installed JAX or optax cannot run the
    model (see `_missing`)."""
    missing = _missing()
    if missing is not None:
        raise RuntimeError(f"{owner}: its Gaussian process needs {missing}, or search with "
                           f"tpe.")


def float64(enabled: bool = True) -> contextlib.AbstractContextManager:
    """The context the model traces in: JAX's 64-bit types on (`jax.enable_x64`, jax >=
    0.8.0: see `check_supported`) inside an otherwise float32 program (`enabled=False`: off
    again, for code inside it that must trace as everywhere else). Arrays it makes are
    float64 and must be used inside it (an operation traced outside would take them for
    float32), so `bayesian_optimization` traces its whole proposal in it and hands back
    float32.

    Inside it, avoid `argmin` / `argmax` of 64-bit arrays: their lowering (after the trace,
    outside the context) makes a 32-bit initial value and fails."""
    check_supported("jaxnas.optimizers.gp")
    return jax.enable_x64(enabled)


def call_in_float64(fn, *args):
    """`fn(*args)` traced in `float64()`, also where a transformation traces it again later.

    `fn` takes and returns arrays of any dtype but keeps float64 ones to itself. Wherever it
    is vmapped after its trace (a `lax.scan`, `while_loop` or `cond` around it, or a jitted
    function containing it, vmapped over seeds), JAX evaluates the traced program again
    outside the context, where it takes its float64 constants for float32 and fails. So
    `fn` is traced once here, its constants made arguments, and a `custom_vmap` rule
    evaluates that program vmapped inside the context instead.
    """
    flat, tree = jax.tree.flatten(args)
    with float64():
        closed, shapes = jax.make_jaxpr(lambda *flat: fn(*jax.tree.unflatten(tree, flat)),
                                        return_shape=True)(*flat)

    def evaluate(consts, flat):
        return jax.core.eval_jaxpr(closed.jaxpr, consts, *flat)

    @custom_vmap
    def call(consts, flat):
        with float64():
            return evaluate(consts, flat)

    @call.def_vmap
    def _(axis_size, in_batched, consts, flat):
        axes = tuple(jax.tree.map(lambda batched: 0 if batched else None, in_batched))
        with float64():
            out = jax.vmap(evaluate, in_axes=axes, axis_size=axis_size)(consts, flat)
        return out, [True] * len(out)

    with float64():
        out = call(list(closed.consts), flat)
    return jax.tree.unflatten(jax.tree.structure(shapes), out)


def _in_float64(fn):
    """`fn` traced in `float64()`, its floating-point array arguments made float64."""

    def widen(leaf):
        if isinstance(leaf, (jax.Array, np.ndarray)) and jnp.issubdtype(leaf.dtype,
                                                                         jnp.floating):
            return jnp.asarray(leaf, DTYPE)
        return leaf

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with float64():
            args, kwargs = jax.tree.map(widen, (args, kwargs))
            return fn(*args, **kwargs)

    return wrapped


def single_threaded_lapack() -> None:
    """Loads the LAPACK that jaxlib calls on a CPU (SciPy's OpenBLAS) with one thread.

    XLA runs the model's Cholesky factorisation and inverse through SciPy's OpenBLAS,
    whose own threads then compete with XLA's for the cores: on 2 cores under load a
    129 x 129 inverse or triangular solve took 10-17x longer with OpenBLAS's default
    threads than with one. OpenBLAS reads its thread count once, when it is loaded, which
    jaxlib does on its first LAPACK call; a model's constructor calls this first, so that
    the load happens here with `OPENBLAS_NUM_THREADS=1` (unless the user set it). Once
    SciPy is loaded (imported by the user's code) this changes nothing.
    """
    if "scipy.linalg" in sys.modules or "OPENBLAS_NUM_THREADS" in os.environ:
        return
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        with contextlib.suppress(ImportError):  # jaxlib then uses its own LAPACK
            importlib.import_module("scipy.linalg.cython_lapack")
    finally:
        del os.environ["OPENBLAS_NUM_THREADS"]


class Data(NamedTuple):
    """A GP's rows: inputs in the unit encoding and which rows are observations.

    Attributes:
        units: `(M, D)` unit values.
        active: `(M, D)` bool, the slots each row uses.
        categorical: `(D,)` bool, the categorical slots.
        targets: `(M,)` (any value where `mask` is False).
        mask: `(M,)` bool, the rows that are observations.
    """

    units: jax.Array
    active: jax.Array
    categorical: jax.Array
    targets: jax.Array
    mask: jax.Array


class Params(NamedTuple):
    """Unconstrained hyperparameters: logs of the inverse squared lengthscales `(D,)`, of
    the kernel scale and of the noise above `MIN_NOISE`."""

    log_theta: jax.Array
    log_scale: jax.Array
    log_noise: jax.Array


class Posterior(NamedTuple):
    """A GP conditioned on its observations (targets standardised).

    Attributes:
        data: the rows, targets standardised (`(y - y_mean) / y_std`).
        params: the fitted hyperparameters.
        whitening: `(M, M)` the inverse of the Cholesky factor `L` of the masked kernel
            matrix plus noise (`K^-1 = W^T W`).
        alpha: `(M,)` the kernel matrix's inverse times the targets (`W^T W y`).
        y_mean, y_std: `()` the standardisation.
    """

    data: Data
    params: Params
    whitening: jax.Array
    alpha: jax.Array
    y_mean: jax.Array
    y_std: jax.Array


def squared_differences(units_a, active_a, units_b, active_b, categorical) -> jax.Array:
    """`(n_a, n_b, D)`: each slot's squared difference (see the module docstring)."""
    both = active_a[:, None] & active_b[None]
    neither = ~active_a[:, None] & ~active_b[None]
    difference = units_a[:, None] - units_b[None]
    numeric = difference * difference
    hamming = (jnp.abs(difference) > 1e-6).astype(difference.dtype)
    per_slot = jnp.where(categorical, hamming, numeric)
    return jnp.where(both, per_slot, jnp.where(neither, 0.0, 1.0))


def kernel(params: Params, squared: jax.Array) -> jax.Array:
    """Matérn-5/2 of the ARD distance, times the scale, from `squared_differences`."""
    # A matrix-vector product, not a multiply and a sum: XLA:CPU runs that reduction (and
    # its gradient's) several times slower.
    r2 = (squared.reshape(-1, squared.shape[-1]) @ jnp.exp(params.log_theta)).reshape(
        squared.shape[:-1])
    r = jnp.sqrt(5.0 * r2 + 1e-12)  # differentiable at 0
    return jnp.exp(params.log_scale) * (1.0 + r + r * r / 3.0) * jnp.exp(-r)


def _matrix(params: Params, data: Data, squared: jax.Array | None = None) -> jax.Array:
    """The masked `K + noise I` (a masked row and column: the identity's); `squared`: the
    rows' `squared_differences`, where already computed."""
    if squared is None:
        squared = squared_differences(data.units, data.active, data.units, data.active,
                                      data.categorical)
    pair = data.mask[:, None] & data.mask[None]
    noise = MIN_NOISE + jnp.exp(params.log_noise)
    eye = jnp.eye(data.mask.shape[0], dtype=DTYPE)
    return jnp.where(pair, kernel(params, squared), 0.0) + eye * jnp.where(data.mask, noise,
                                                                           1.0)


@jax.custom_vjp
def _negative_log_likelihood(matrix: jax.Array, y: jax.Array, n: jax.Array) -> jax.Array:
    """`0.5 y^T K^-1 y + 0.5 log det K + 0.5 n log 2 pi` (Alg. 2.1), differentiable in
    `K` by the closed form `0.5 (K^-1 - alpha alpha^T)` (R&W Eq. (5.9)): on a CPU that is
    an order of magnitude faster than differentiating through the Cholesky factor."""
    return _likelihood_forward(matrix, y, n)[0]


@_in_float64  # traced again where vmapped, maybe outside the context
def _likelihood_forward(matrix, y, n):
    cholesky, whitening = _factor(matrix)
    white = whitening @ y
    alpha = whitening.T @ white
    value = 0.5 * white @ white + jnp.sum(jnp.log(jnp.diag(cholesky))) + 0.5 * n * _LOG_2PI
    return value, (whitening.T @ whitening, alpha)


@_in_float64  # traced again where vmapped, maybe outside the context
def _likelihood_backward(residuals, g):
    inverse, alpha = residuals
    return 0.5 * g * (inverse - jnp.outer(alpha, alpha)), None, None


_negative_log_likelihood.defvjp(_likelihood_forward, _likelihood_backward)


def _factor(matrix: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A symmetric positive definite matrix's Cholesky factor `L` and its inverse `W`.

    Solves go through `W` (`K^-1 y = W^T (W y)`), never through an explicit `K^-1`: in
    float32 the inverse of a kernel matrix whose rows cluster near an optimum (condition
    number ~1e7) lost every digit of the posterior mean (a 50-point Branin fit: 0.99 mean
    error near the optimum, against 0.004 through the factor and 0.003 in float64),
    whereas `W`'s error grows with the factor's condition number, the square root of K's.
    """
    eye = jnp.eye(matrix.shape[0], dtype=matrix.dtype)
    cholesky = jnp.linalg.cholesky(matrix)
    jitter = FALLBACK_JITTER * matrix.shape[0] * jnp.max(jnp.diag(matrix))
    cholesky = jax.lax.cond(jnp.all(jnp.isfinite(cholesky)), lambda c, _: c,  # computed
                            lambda _, m: jnp.linalg.cholesky(m),  # only where it failed
                            cholesky, matrix + jitter * eye)
    return cholesky, jax.scipy.linalg.solve_triangular(cholesky, eye, lower=True)


@_in_float64
def negative_log_posterior(params: Params, data: Data,
                           squared: jax.Array | None = None) -> jax.Array:
    """Minus (log marginal likelihood + log prior) of standardised targets; `squared`: the
    rows' `squared_differences`, where already computed (a fit computes them once)."""
    y = jnp.where(data.mask, data.targets, 0.0)
    n = jnp.sum(data.mask).astype(DTYPE)
    return (_negative_log_likelihood(_matrix(params, data, squared), y, n)
            - _log_prior(params))


def _log_prior(params: Params) -> jax.Array:
    """Optuna's default prior (constants dropped)."""
    theta, scale = jnp.exp(params.log_theta), jnp.exp(params.log_scale)
    noise = MIN_NOISE + jnp.exp(params.log_noise)

    def gamma(x, concentration, rate):  # Gamma's log density, constants dropped
        return (concentration - 1.0) * jnp.log(x) - rate * x

    return (-jnp.sum(0.1 / theta + 0.1 * theta) + gamma(scale, 2.0, 1.0)
            + gamma(noise, 1.1, 30.0))


def initial_params(dims: int) -> Params:
    """Optuna's starting values: every `theta` 1, scale 1, noise 0.01 (float32, as a
    state keeps them; `fit` widens its start)."""
    return Params(jnp.zeros((dims,), jnp.float32), jnp.zeros((), jnp.float32),
                  jnp.asarray(math.log(1e-2), jnp.float32))


@_in_float64
def fit(data: Data, start: Params | None = None, steps: Any = FIT_STEPS,
        tolerance: Any = None) -> Posterior:
    """Standardises the targets, fits the hyperparameters, conditions on the rows.

    Args:
        data: the rows.
        start: where the fit starts (default: `initial_params`, Optuna's start).
        steps: the most L-BFGS iterations (may be traced; 0 keeps `start`).
        tolerance: None runs every step; a number (may be traced) stops the fit where the
            gradient's largest entry is at most this (`FIT_TOLERANCE`, Optuna's `gtol`:
            `bayesian_optimization`'s).
    """
    n = jnp.maximum(jnp.sum(data.mask), 1).astype(DTYPE)
    y = jnp.where(data.mask, data.targets, 0.0)
    y_mean = jnp.sum(y) / n
    y_var = jnp.sum(jnp.where(data.mask, (y - y_mean) ** 2, 0.0)) / n
    y_std = jnp.where(y_var > 1e-12, jnp.sqrt(y_var), 1.0)
    data = data._replace(targets=jnp.where(data.mask, (y - y_mean) / y_std, 0.0))
    start = initial_params(data.units.shape[-1]) if start is None else start
    params = _maximise(data, jax.tree.map(lambda p: jnp.asarray(p, DTYPE), start), steps,
                       tolerance)
    return condition(Posterior(data, params, jnp.zeros(()), jnp.zeros(()), y_mean, y_std))


def _maximise(data: Data, start: Params, steps: Any, tolerance: Any) -> Params:
    """L-BFGS on the negative log posterior from `start`, for at most `steps` iterations,
    until the gradient's largest entry is at most `tolerance` (none: every step); the best
    parameters seen, the start where none is finite.

    The best, not the last: a kernel matrix near singular makes the objective rough at
    the bottom, where L-BFGS's last steps can go up.
    """
    squared = squared_differences(data.units, data.active, data.units, data.active,
                                  data.categorical)  # the same at every evaluation
    objective = lambda p: negative_log_posterior(p, data, squared)  # noqa: E731
    solver = optax.lbfgs(linesearch=optax.scale_by_zoom_linesearch(
        max_linesearch_steps=_LINE_SEARCH_STEPS))
    value_and_grad = optax.value_and_grad_from_state(objective)

    def finite(value, params):
        ok = jnp.isfinite(value) & jnp.all(jnp.isfinite(params.log_theta))
        return jnp.where(ok, value, jnp.inf)

    def keep_better(params, value, best, best_value):
        better = value < best_value
        return (jax.tree.map(lambda p, b: jnp.where(better, p, b), params, best),
                jnp.where(better, value, best_value))

    def going(carry):
        i, _, _, _, _, converged = carry
        return (i < steps) & ~converged

    def step(carry):
        i, params, state, best, best_value, _ = carry
        value, grad = value_and_grad(params, state=state)  # at `params` (the start at 0)
        best, best_value = keep_better(params, finite(value, params), best, best_value)
        # Optuna's test (scipy's L-BFGS-B `gtol`), at the point the step would leave.
        largest = jnp.max(jnp.abs(jnp.concatenate([g.ravel() for g in jax.tree.leaves(grad)])))
        converged = (largest <= tolerance) if tolerance is not None else jnp.asarray(False)
        updates, moved = solver.update(grad, state, params, value=value, grad=grad,
                                       value_fn=objective)
        stepped = optax.apply_updates(params, updates)
        reached = finite(optax.tree_utils.tree_get(moved, "value"), stepped)  # line search's
        moved_best, moved_value = keep_better(stepped, reached, best, best_value)
        keep = lambda old, new: jax.tree.map(  # noqa: E731
            lambda a, b: jnp.where(converged, a, b), old, new)
        return (i + 1, keep(params, stepped), keep(state, moved), keep(best, moved_best),
                keep(best_value, moved_value), converged)

    carry = (0, start, solver.init(start), start, jnp.asarray(jnp.inf, DTYPE),
             jnp.asarray(False))
    best = jax.lax.while_loop(going, step, carry)[3]
    return Params(jnp.clip(best.log_theta, -12.0, 12.0), jnp.clip(best.log_scale, -12.0, 12.0),
                  jnp.clip(best.log_noise, _LOG_NOISE_FLOOR, 12.0))


@_in_float64
def condition(posterior: Posterior) -> Posterior:
    """The factor and weights for the posterior's rows (after their mask or targets
    changed: a fantasy added), keeping its hyperparameters and standardisation."""
    _, whitening = _factor(_matrix(posterior.params, posterior.data))
    y = jnp.where(posterior.data.mask, posterior.data.targets, 0.0)
    return posterior._replace(whitening=whitening, alpha=whitening.T @ (whitening @ y))


@_in_float64
def predict(posterior: Posterior, units: jax.Array, active: jax.Array) -> tuple[jax.Array,
                                                                                jax.Array]:
    """Posterior mean and standard deviation `(n,)` at `n` points, standardised units."""
    data = posterior.data
    squared = squared_differences(units, active, data.units, data.active, data.categorical)
    cross = jnp.where(data.mask[None], kernel(posterior.params, squared), 0.0)  # (n, M)
    mean = cross @ posterior.alpha
    prior_variance = jnp.exp(posterior.params.log_scale)
    white = cross @ posterior.whitening.T  # (n, M): W k for each point
    explained = jnp.sum(white * white, axis=-1)
    variance = jnp.maximum(prior_variance - explained, 1e-12)
    return mean, jnp.sqrt(variance)


@_in_float64
def log_expected_improvement(mean: jax.Array, std: jax.Array, best: jax.Array) -> jax.Array:
    """log EI of a minimisation at `best` (Ament et al., "Unexpected Improvements to
    Expected Improvement", NeurIPS 2023, Eq. (9)-(10): stable where EI underflows)."""
    z = (best - mean) / std
    return jnp.log(std) + _log_h(z)


def _log_h(z: jax.Array) -> jax.Array:
    """`log(phi(z) + z Phi(z))`, computed in three ranges (Ament et al., Eq. (9))."""
    log_phi = -0.5 * z * z - 0.5 * _LOG_2PI
    direct = jnp.log(jnp.maximum(jnp.exp(log_phi) + z * jnp.exp(log_ndtr(z)), 1e-300))
    # z < -1: phi(z) (1 + z Phi(z) / phi(z)), the ratio by log_ndtr; for z below -100
    # the asymptotic 1 / z**2.
    ratio = jnp.exp(log_ndtr(jnp.minimum(z, -1.0)) - log_phi)
    middle = log_phi + jnp.log(jnp.maximum(1.0 + z * ratio, 1e-30))
    far = log_phi - 2.0 * jnp.log(jnp.abs(jnp.minimum(z, -1.0)))
    return jnp.where(z > -1.0, direct, jnp.where(z > -100.0, middle, far))
