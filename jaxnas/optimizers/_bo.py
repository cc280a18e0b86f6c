"""Bayesian optimisation with a Gaussian process, and PiBO when the space has priors.

Each proposal maximises log expected improvement (Ament et al., NeurIPS 2023) under the GP
of `gp.py`, fitted to the best `model_size` trials. The acquisition is maximised by
scoring many candidates at once (uniform draws, prior draws and local moves around the
best trials), then three rounds of ever smaller local moves around the best candidates so
far (steps of 0.025, 0.006 and 0.0015 of each slot's range), which a search's last digits
need. A batch is chosen one row at a
time, each chosen configuration then added to the GP at its predicted mean (the Kriging
believer, Ginsbourger et al. 2010), as are the pending trials of other workers.

With priors (PiBO, Hvarfner et al., "piBO: Augmenting Acquisition Functions with User
Beliefs for Bayesian Optimization", ICLR 2022, Eq. (4)): the acquisition is multiplied by
`prior(x) ** (beta / n)`, `n` the successful trials so far, so the prior leads early and
fades as evidence grows; the random start samples the prior.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.optimizers import _base, gp
from jaxnas.optimizers._base import Optimizer, Source, Status, Trials
from jaxnas.optimizers._random_search import RandomSearchState, _single_fidelity
from jaxnas.space import Categorical, Config, SearchSpace

# Acquisition search: candidates per proposal from each source, then local refinement of
# the best few. Local moves perturb each slot with probability `_MOVE_RATE` by a normal of
# sigma `_MOVE_STD` (then each of `_REFINE_STDS` in turn) in the unit encoding
# (`SearchSpace.mutate`).
_UNIFORM, _PRIOR, _LOCAL_PARENTS, _LOCAL_PER_PARENT = 256, 64, 8, 16
_REFINE_PARENTS, _REFINE_PER_PARENT = 8, 16
_MOVE_RATE, _MOVE_STD = 0.3, 0.1
_REFINE_STDS = (0.025, 0.006, 0.0015)
# A failed trial enters the model at the worst successful loss (it ranks after every
# success when rows are chosen); a pending one at the model's predicted mean.
_FAILED_KEY, _PENDING_KEY = 1e30, 2e30


def bayesian_optimization(spec: SearchSpace, *, batch_size: int = 1,
                          n_startup_trials: int = 10, model_size: int = 128,
                          prior_beta: float = 10.0, use_prior: bool = True,
                          refit_growth: float = 0.1,
                          max_trials: int = 1024) -> Optimizer:
    """GP-based Bayesian optimisation (log EI); PiBO when the space has priors.

    Trials are evaluated at the space's maximum fidelity (NaN without one). See the module
    docstrings of `_bo.py` and `gp.py` for the model, the acquisition and its search.

    Args:
        spec: A compiled search space with at least one `Float` or `Integer`.
        batch_size: Configurations per ask, chosen one after another with the Kriging
            believer.
        n_startup_trials: Random configurations until this many trials succeeded (Optuna's
            `GPSampler`: 10); from the prior with `use_prior` and a space with priors.
        model_size: The most trials the GP is fitted to (the best ones): its cost per ask
            is bounded by this, not by the run's length.
        prior_beta: PiBO's `beta`: the acquisition is weighted by `prior ** (beta / n)`.
        use_prior: Use the space's priors (PiBO and the start); False ignores them.
        refit_growth: The GP's hyperparameters are fitted again once the successful trials
            have grown by this fraction since the last fit (by at least one); in between,
            each ask conditions the GP on every trial with the last fit's hyperparameters.
            0 fits at every ask, as Optuna's `GPSampler` does. Each fit starts where the
            last one ended (as `GPSampler` does) and stops where the gradient's largest
            entry is at most `gp.FIT_TOLERANCE` (Optuna's `gtol`), after at most
            `gp.FIT_STEPS` L-BFGS iterations. At 200 trials of Hartmann-6 this costs about
            7 ms a trial (9.5 ms with 0.05; see `benchmarks/optimizers.py`), against 65 ms
            for fits of 25 iterations from Optuna's start at every ask (in float32); on
            development seeds 0.1 and 0.05 found the same regrets at 25-200 trials.
        max_trials: Trials the state must hold (see `random_search`).

    Returns:
        An `Optimizer` whose state is a `RandomSearchState`; its `model` holds the GP's
        last fitted hyperparameters and the successful trials at that fit (0: none yet).

    Raises:
        TypeError, ValueError: a bad argument (named with its value), or a space without a
            numeric slot (use `tpe` or `grid_search` there).
    """
    owner = "bayesian_optimization"
    gp.check_supported(owner)
    spec = _base.check_space(owner, spec, needs_fidelity=False)
    batch_size = _base.check_positive_int(owner, "batch_size", batch_size)
    n_startup_trials = _base.check_positive_int(owner, "n_startup_trials", n_startup_trials)
    model_size = _base.check_positive_int(owner, "model_size", model_size)
    prior_beta = _base.check_non_negative_float(owner, "prior_beta", prior_beta)
    use_prior = _base.check_bool(owner, "use_prior", use_prior)
    refit_growth = _base.check_non_negative_float(owner, "refit_growth", refit_growth)
    max_trials = _base.check_positive_int(owner, "max_trials", max_trials)
    categorical = categorical_slots(owner, spec)
    with_prior = use_prior and _base.has_priors(spec)
    start = spec.sample_prior if with_prior else spec.sample
    start_source = Source.PRIOR if with_prior else Source.UNIFORM
    model = Model(spec, categorical, min(model_size, max_trials), batch_size,
                  prior_beta if with_prior else None)
    # The GP's last fitted hyperparameters (Optuna's start before the first fit) and the
    # successful trials there were at that fit (0: no fit yet).
    no_fit = (gp.initial_params(len(spec.paths)), jnp.zeros((), jnp.int32))

    def propose(state: RandomSearchState, key: jax.Array
                ) -> tuple[Config, jax.Array, tuple[gp.Params, jax.Array]]:
        trials = state.trials
        successes = jnp.sum(trials.status == Status.SUCCESS).astype(jnp.int32)
        warm = successes >= n_startup_trials

        def random(key):
            return (_base.map_rows(start, jax.random.split(key, batch_size)),
                    jnp.full((batch_size,), start_source, jnp.int32), state.model)

        def modelled(key):
            params, fitted_at = state.model
            grown = successes - fitted_at >= jnp.maximum(
                1, jnp.floor(refit_growth * fitted_at).astype(jnp.int32))
            refit = (fitted_at == 0) | grown
            configs, params = model.propose_from(trials, key, params,
                                                 jnp.where(refit, gp.FIT_STEPS, 0))
            return (configs, jnp.full((batch_size,), Source.MODEL, jnp.int32),
                    (params, jnp.where(refit, successes, fitted_at)))

        return jax.lax.cond(warm, modelled, random, key)

    return _single_fidelity(spec, propose, batch_size, max_trials, model=no_fit)


def categorical_slots(owner: str, spec: SearchSpace) -> np.ndarray:
    """`(D,)` bool, the categorical slots; raises for a space without a numeric one."""
    parameters = spec.parameters()
    categorical = np.array([isinstance(parameters[p], Categorical) for p in spec.paths], bool)
    if categorical.all():
        raise ValueError(
            f"{owner}: the space has no numeric dimension (its slots "
            f"{', '.join(spec.paths) or '(none)'} are all categorical); a Gaussian process "
            f"needs a Float or Integer. Use optimizer='tpe' or 'grid_search'.")
    return categorical


class Model:
    """The GP proposals of one space: static settings, pure methods (shared with
    `priorband_bo`)."""

    def __init__(self, spec: SearchSpace, categorical: np.ndarray, model_size: int,
                 batch: int, prior_beta: float | None):
        gp.single_threaded_lapack()
        self.spec, self.categorical = spec, np.asarray(categorical, bool)  # a constant
        self.model_size, self.batch, self.prior_beta = model_size, batch, prior_beta

    def encode(self, configs: Config) -> tuple[jax.Array, jax.Array]:
        """`(n, D)` unit values and used slots of a batch of configs."""
        with gp.float64(False):
            return (jax.vmap(self.spec.to_unit)(configs),
                    jax.vmap(lambda c: self.spec.active(c).array)(configs))

    def fit(self, trials: Trials, eligible: jax.Array, start: gp.Params | None = None,
            steps: Any = gp.FIT_STEPS, tolerance: Any = None
            ) -> tuple[gp.Posterior, Config, jax.Array]:
        """The GP of the best `model_size` `eligible` trials (failed ones at the worst
        loss), pending ones added at their predicted mean, `batch` empty rows for the
        batch's own believers; its fit starts at `start`, takes at most `steps` iterations
        and stops at `tolerance` (see `gp.fit`). Also the model rows' configs and which of
        them succeeded."""
        success = eligible & (trials.status == Status.SUCCESS)
        keys = jnp.where(success, trials.losses,
                         jnp.where(trials.status == Status.FAILED, _FAILED_KEY,
                                   jnp.where(trials.status == Status.PENDING, _PENDING_KEY,
                                             jnp.inf)))
        keys = jnp.where(eligible, keys, jnp.inf)
        size = min(self.model_size, keys.shape[0])
        order = jax.lax.top_k(-keys, size)[1]
        rows = jnp.concatenate([order, jnp.zeros((self.batch,), order.dtype)])
        chosen = jnp.concatenate([keys[order], jnp.full((self.batch,), jnp.inf)])
        told, pending = chosen < _PENDING_KEY, chosen == _PENDING_KEY
        worst = jnp.max(jnp.where(success, trials.losses, -jnp.inf))
        targets = jnp.where(chosen < _FAILED_KEY, chosen, worst)
        configs = jax.tree.map(lambda c: c[rows], trials.configs)
        units, active = self.encode(configs)
        posterior = gp.fit(gp.Data(units, active, self.categorical, targets, told), start,
                           steps, tolerance)

        def believe_pending(posterior):  # another factorisation: only where needed
            believed, _ = gp.predict(posterior, units, active)
            data = posterior.data
            return gp.condition(posterior._replace(data=data._replace(
                targets=jnp.where(pending, believed, data.targets), mask=told | pending)))

        posterior = jax.lax.cond(jnp.any(pending), believe_pending, lambda p: p, posterior)
        return posterior, configs, success[rows] & told

    def propose(self, trials: Trials, key: jax.Array, eligible: jax.Array | None = None,
                count: jax.Array | None = None, prior_scale: jax.Array | float = 1.0
                ) -> Config:
        """`batch` configurations, each maximising the acquisition given the ones before;
        the model sees the `eligible` trials (default: all). With a traced `count`, only
        the first `count` rows are proposed (a loop of that many trips); the rest are
        copies of the best model row, for the caller to ignore. `prior_scale` (traced)
        multiplies PiBO's `beta`."""
        return self._propose(trials, key, eligible, count, prior_scale)[0]

    def propose_from(self, trials: Trials, key: jax.Array, start: gp.Params | None,
                     steps: Any) -> tuple[Config, gp.Params]:
        """`propose` over every trial with the GP's fit started at `start` (None: the
        default), at most `steps` iterations that stop where the gradient is within
        `gp.FIT_TOLERANCE` (0 steps: the GP keeps `start`); also the fitted
        hyperparameters."""
        return self._propose(trials, key, None, None, 1.0, start, steps, gp.FIT_TOLERANCE)

    def _propose(self, trials, key, eligible, count, prior_scale, start=None,
                 steps=gp.FIT_STEPS, tolerance=None) -> tuple[Config, gp.Params]:
        """Traced in `gp.float64()` (`gp.call_in_float64`), the GP's arrays float64 from fit
        to last prediction; the configs come back in the trial table's dtypes, the
        hyperparameters float32."""
        if eligible is None:
            eligible = jnp.ones(trials.status.shape, bool)
        if start is None:
            start = gp.initial_params(len(self.spec.paths))

        def propose(trials, key, eligible, prior_scale, start, steps, *count):
            configs, params = self._propose_float64(trials, key, eligible,
                                                    count[0] if count else None, prior_scale,
                                                    start, steps, tolerance)
            return (jax.tree.map(lambda c, t: c.astype(t.dtype), configs, trials.configs),
                    jax.tree.map(lambda p: p.astype(jnp.float32), params))

        return gp.call_in_float64(propose, trials, key, eligible,
                                  jnp.asarray(prior_scale, jnp.float32), start,
                                  jnp.asarray(steps, jnp.int32),
                                  *(() if count is None else (count,)))

    def _propose_float64(self, trials, key, eligible, count, prior_scale, start, steps,
                         tolerance) -> tuple[Config, gp.Params]:
        posterior, configs, succeeded = self.fit(trials, eligible, start, steps, tolerance)
        params = posterior.params
        best = jnp.min(jnp.where(succeeded, posterior.data.targets, jnp.inf))
        n_success = jnp.sum(eligible & (trials.status == Status.SUCCESS)).astype(jnp.float32)
        # PiBO's exponent beta / n (Eq. (4)), in logs a weight on log prior.
        prior_power = (self.prior_beta or 0.0) * prior_scale / jnp.maximum(n_success, 1.0)
        first_free = min(self.model_size, trials.status.shape[0])  # the believers' rows
        keys = jax.random.split(key, self.batch)
        # The first best row (`argmin`, which float64 does not lower here; see gp.float64).
        start = jax.lax.top_k(-jnp.where(succeeded, posterior.data.targets, jnp.inf), 1)[1][0]
        proposals = jax.tree.map(lambda c: jnp.broadcast_to(c[start], (self.batch,
                                                                       *c.shape[1:])), configs)

        trips = self.batch if count is None else jnp.minimum(count, self.batch)

        def one(row, carry):
            posterior, proposals = carry
            config = self._maximise(posterior, configs, succeeded, best, prior_power, keys[row])
            proposals = jax.tree.map(lambda p, c: p.at[row].set(c), proposals, config)

            def believe(posterior):  # the next row's model: this one at its predicted mean
                units, active = self.encode(jax.tree.map(lambda a: a[None], config))
                mean, _ = gp.predict(posterior, units, active)
                data = posterior.data
                at = first_free + row
                return gp.condition(posterior._replace(data=data._replace(
                    units=data.units.at[at].set(units[0]),
                    active=data.active.at[at].set(active[0]),
                    targets=data.targets.at[at].set(mean[0]), mask=data.mask.at[at].set(True))))

            posterior = jax.lax.cond(row + 1 < trips, believe, lambda p: p, posterior)
            return posterior, proposals

        return jax.lax.fori_loop(0, trips, one, (posterior, proposals))[1], params

    def _score(self, posterior, candidates: Config, best, prior_power) -> jax.Array:
        units, active = self.encode(candidates)
        mean, std = gp.predict(posterior, units, active)
        score = gp.log_expected_improvement(mean, std, best)
        if self.prior_beta is not None:  # PiBO, Eq. (4), in logs
            with gp.float64(False):
                log_prior = jax.vmap(self.spec.log_prior)(candidates)
            score = score + prior_power * log_prior
        return jnp.where(jnp.isfinite(score), score, -jnp.inf)

    def _maximise(self, posterior, configs, succeeded, best, prior_power, key) -> Config:
        """The best of uniform, prior and local candidates, then of local moves around
        the best of those."""
        spec = self.spec
        key_uniform, key_prior, key_local, key_refine = jax.random.split(key, 4)
        with gp.float64(False):  # the space's functions trace as everywhere else
            uniform = jax.vmap(spec.from_unit)(
                jax.random.uniform(key_uniform, (_UNIFORM, len(spec.paths))))
            pools = [uniform]
            if self.prior_beta is not None:
                pools.append(_base.map_rows(spec.sample_prior,
                                            jax.random.split(key_prior, _PRIOR)))
        losses = jnp.where(succeeded, posterior.data.targets, jnp.inf)
        # A model smaller than _LOCAL_PARENTS rows (a run of a few evaluations): all of it.
        parents = jax.lax.top_k(-losses, min(_LOCAL_PARENTS, losses.shape[0]))[1]
        pools.append(self._moves(key_local, jax.tree.map(lambda c: c[parents], configs),
                                 _LOCAL_PER_PARENT, _MOVE_STD))
        candidates = jax.tree.map(lambda *c: jnp.concatenate(c), *pools)
        score = self._score(posterior, candidates, best, prior_power)
        top = jax.lax.top_k(score, _REFINE_PARENTS)[1]
        parents, parent_score = jax.tree.map(lambda c: c[top], candidates), score[top]

        def refine(carry, round_):  # one round of moves; a scan: one copy in the program
            parents, parent_score = carry
            round_key, std = round_
            moved = self._moves(round_key, parents, _REFINE_PER_PARENT, std)
            moved_score = self._score(posterior, moved, best, prior_power)
            pool = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), parents, moved)
            pool_score = jnp.concatenate([parent_score, moved_score])
            top = jax.lax.top_k(pool_score, _REFINE_PARENTS)[1]
            return (jax.tree.map(lambda c: c[top], pool), pool_score[top]), None

        rounds = (jax.random.split(key_refine, len(_REFINE_STDS)),
                  jnp.asarray(_REFINE_STDS, jnp.float32))
        parents, _ = jax.lax.scan(refine, (parents, parent_score), rounds)[0]
        return jax.tree.map(lambda c: c[0], parents)  # top_k sorts: the best first

    def _moves(self, key, parents: Config, per_parent: int, std: float) -> Config:
        """`per_parent` local moves of each parent (`SearchSpace.mutate`), vmapped: as a
        loop over the 128 rows (`_base.map_rows`, which compiles faster) they were 1 ms
        of a 3 ms ask on a CPU (a few dozen tiny operations a row), and a loop of
        sequential rows is worse still on an accelerator."""
        n = jax.tree.leaves(parents)[0].shape[0]
        repeated = jax.tree.map(lambda c: jnp.repeat(c, per_parent, axis=0), parents)
        keys = jax.random.split(key, n * per_parent)
        with gp.float64(False):
            return jax.vmap(lambda k, c: self.spec.mutate(k, c, _MOVE_RATE, std))(keys,
                                                                                  repeated)
