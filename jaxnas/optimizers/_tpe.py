"""Tree-structured Parzen estimator (TPE), multivariate, as Optuna's `TPESampler` builds it.

Bergstra et al., "Algorithms for Hyper-Parameter Optimization", NeurIPS 2011; Falkner et
al., "BOHB", ICML 2018 (the multivariate kernel density); Watanabe, "Tree-Structured Parzen
Estimator: Understanding Its Algorithm Components", 2023 (Optuna's defaults, Table 1).

The successful trials are split by loss into the best `gamma(n) = min(ceil(0.1 n), 25)`
("below") and the rest ("above"); each group is a Parzen estimator, a weighted mixture of
one product kernel per trial plus a prior kernel. Candidates are drawn from the below
mixture `l` and the one with the largest `log l(x) - log g(x)` is proposed. Following
Optuna 5 (`optuna/samplers/_tpe/parzen_estimator.py`, `sampler.py`) with `multivariate=True`:

* numbers are modelled in their unit encoding (`SearchSpace.to_unit`: the log scale for
  `log=True`, an integer's bins half a unit past its bounds, as Optuna's internal
  representation), each trial's kernel a normal truncated to [0, 1]; its bandwidth in each
  dimension is the larger distance to its neighbours among the group's values there (the
  range's ends count as neighbours, except that the lowest and highest values take their
  inner neighbour's distance, `consider_endpoints=False`), clipped to
  `[1 / min(100, n + 2), 1]` (the "magic clip"); an integer's probability is the kernel's
  mass over its bin;
* a categorical kernel puts `prior_weight / (n + 1)` on every choice plus 1 on the trial's
  own, normalised;
* the prior kernel is Optuna's (a normal centred on the range with sigma its width, uniform
  over choices), with weight `prior_weight`; the trials' weights ramp up with recency once a
  group holds more than 25 (`default_weights`);
* `n_startup_trials` random trials come first, `n_ei_candidates` candidates per proposal.

Where jaxnas differs, and why:

* The user's prior is a pseudo-observation among the good trials: with `use_prior` and a
  space with priors, the prior kernel of `l` is the space's prior (`SearchSpace.log_prior`,
  `sample_prior`) instead of Optuna's uninformative one; `g` keeps the uninformative one.
  The random start then samples from the prior.
* Conditional slots: as Optuna's `group=True`, slots used together form a group (found
  from the activity of 256 uniform samples), and each group gets its own TPE over the
  trials that use it; a proposal takes each group's winner, and a group's candidates are
  all scored on the group's slots. A group's good trials are Optuna's, those of its
  trials among the best `gamma(n)` of all, and also the best `gamma(n_group)` of its own
  trials: Optuna's alone leave a branch with no good trial among the best overall to its
  prior kernel, these alone leave the leading branch fewer good trials than Optuna's.
  So a branch that looks worse than another still has good examples of its own slots,
  and the leading branch is exploited as fast as Optuna does. On
  `jn.problems.mf_mixed` (benchmarks/optimizers.py, development seeds), either rule alone
  fell behind Optuna at 50 or 100 evaluations, the union did not. Within an estimator a
  kernel models only the slots its trial used (the uninformative kernel elsewhere). With the
  prior as a pseudo-observation the space is one group, since the prior's density is the
  whole configuration's; measured on `mf_mixed`, one group was significantly worse than
  Optuna at 100 and 200 evaluations, the groups no longer are.
* A slot's bandwidths and magic clip count the group's trials that use the slot. Equal
  values (an integer's) take their bandwidths in trial order; Optuna's take numpy's
  unstable sort order, arbitrary past 16 values (Optuna with a stable sort measured the
  same on `mf_mixed`).
* Failed trials join the above group (Optuna ignores them): a region that fails is one to
  leave. Pending trials join it too, Optuna's `constant_liar`, so that parallel workers
  and the rows of one batch spread out; each row of a batch draws its own candidates.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.optimizers import _base
from jaxnas.optimizers._base import Optimizer, Source, Status, Trials
from jaxnas.optimizers._random_search import RandomSearchState, _single_fidelity
from jaxnas.optimizers.parzen import (GAMMA_CAP, Observations, ParzenEstimator, SlotKinds,
                                      best_rows, split, uniforms_per_draw)
from jaxnas.space import Config, SearchSpace


def tpe(spec: SearchSpace, *, batch_size: int = 1, n_startup_trials: int = 10,
        n_ei_candidates: int = 24, prior_weight: float = 1.0, use_prior: bool = True,
        max_trials: int = 1024, model_size: int = 1024) -> Optimizer:
    """Multivariate TPE with Optuna's defaults; the space's prior as a pseudo-observation.

    Trials are evaluated at the space's maximum fidelity (NaN without one). See the module
    docstring for the model, where it follows Optuna and where it differs.

    Args:
        spec: A compiled search space.
        batch_size: Configurations per ask (each draws its own candidates; pending trials
            count as bad ones, Optuna's constant liar).
        n_startup_trials: Random configurations until this many trials succeeded (Optuna:
            10); from the prior with `use_prior` and a space with priors.
        n_ei_candidates: Candidates drawn from the good trials' density per proposal
            (Optuna: 24).
        prior_weight: The prior kernel's weight against one trial's (Optuna: 1.0).
        use_prior: Use the space's priors (the start, and the good trials' prior kernel).
        max_trials: Trials the state must hold; its capacity is this rounded up to a power
            of two (see `random_search`).
        model_size: The newest trials the model reads (Optuna reads all of them): an ask
            costs what this does, not what the capacity does. Until a run holds more, it
            reads every trial.

    Returns:
        An `Optimizer` whose state is a `RandomSearchState`.

    Raises:
        TypeError, ValueError: a bad argument; the message names it and its value.

    Example:
        >>> opt = tpe(spec)
        >>> state = opt.init(jax.random.key(0))
        >>> state, proposals = jax.jit(opt.ask)(state, jax.random.key(1))
    """
    owner = "tpe"
    spec = _base.check_space(owner, spec, needs_fidelity=False)
    batch_size = _base.check_positive_int(owner, "batch_size", batch_size)
    n_startup_trials = _base.check_positive_int(owner, "n_startup_trials", n_startup_trials)
    n_ei_candidates = _base.check_positive_int(owner, "n_ei_candidates", n_ei_candidates)
    prior_weight = _base.check_positive_float(owner, "prior_weight", prior_weight)
    use_prior = _base.check_bool(owner, "use_prior", use_prior)
    max_trials = _base.check_positive_int(owner, "max_trials", max_trials)
    model_size = _base.check_positive_int(owner, "model_size", model_size)
    kinds = SlotKinds(spec)
    with_prior = use_prior and _base.has_priors(spec)
    # With the prior as a pseudo-observation the space is one group (the prior's density
    # is the whole configuration's); without, the groups of slots used together.
    groups = [np.arange(len(spec.paths))] if with_prior else slot_groups(spec)
    start = spec.sample_prior if with_prior else spec.sample
    start_source = Source.PRIOR if with_prior else Source.UNIFORM

    def propose(state: RandomSearchState, key: jax.Array) -> tuple[Config, jax.Array]:
        trials = state.trials
        key_start, key_model = jax.random.split(key)
        warm = jnp.sum(trials.status == Status.SUCCESS) >= n_startup_trials

        def random() -> Config:
            return _base.map_rows(start, jax.random.split(key_start, batch_size))

        def modelled() -> Config:
            return _grouped_batch(spec, kinds, groups, with_prior,
                                  _base.newest_trials(trials, model_size), key_model,
                                  batch_size, n_ei_candidates, prior_weight)

        configs = jax.lax.cond(warm, modelled, random)  # only the branch taken runs
        sources = jnp.where(warm, Source.MODEL, start_source).astype(jnp.int32)
        return configs, jnp.full((batch_size,), sources)

    return _single_fidelity(spec, propose, batch_size, max_trials)


@functools.cache  # a space is immutable and hashable; this compiles a small program
def slot_groups(spec: SearchSpace) -> list[np.ndarray]:
    """Slots used together (Optuna's `group=True` decomposition): slots whose use agrees
    in 256 uniform samples form a group; a space without conditions is one group."""
    keys = jax.random.split(jax.random.key(0), 256)
    active = np.asarray(jax.jit(jax.vmap(lambda k: spec.active(spec.sample(k)).array))(keys))
    groups: dict[bytes, list[int]] = {}
    for slot in range(active.shape[1]):
        groups.setdefault(active[:, slot].tobytes(), []).append(slot)
    return [np.asarray(g) for g in groups.values()]


def _grouped_batch(spec: SearchSpace, kinds: SlotKinds, groups: list[np.ndarray],
                   with_prior: bool, trials: Trials, key: jax.Array, batch: int,
                   n_candidates: int, prior_weight: float) -> Config:
    """`batch` proposals: each group's slots from its own TPE over the trials that use
    the group, as Optuna's `group=True` does (good trials: see the module docstring).

    One group's program, vmapped over the groups (`_GroupLayout`), not one program per
    group: `jn.problems.mf_mixed`'s four groups made an ask that compiled in 5.3 s at
    level 0, and make one that compiles in 1.5 s, with the same proposals."""
    if len(groups) == 1:
        return _model_batch(spec, kinds, with_prior, trials, key, batch, n_candidates,
                            prior_weight)
    layout = _GroupLayout(kinds, groups)
    observed = Observations(spec, kinds, trials.configs)
    overall_below, _ = split(trials)
    # Every group's uniforms in one draw (each draw is a loop of its own on a CPU), each
    # group reading its own block of columns as a program per group would.
    draws = jax.random.uniform(key, (batch * n_candidates, layout.draw_width))

    def one_group(cols, valid, first, draw_columns):
        return _group_batch(spec, layout.kinds, cols, valid, first, observed, trials,
                            draws[:, draw_columns], batch, n_candidates, prior_weight,
                            overall_below)

    winners = jax.vmap(one_group)(*layout.arrays())  # (groups, batch, G)
    units = jnp.zeros((batch, len(spec.paths) + 1), jnp.float32)  # + a column for padding
    units = units.at[:, layout.targets.reshape(-1)].set(
        jnp.moveaxis(winners, 0, 1).reshape(batch, -1))
    return jax.vmap(spec.from_unit)(units[:, :-1])


class _GroupLayout:
    """The groups of slots laid out alike, so that one group's program serves them all:
    each group's slots sorted by kind into `F` float, `I` integer and `C` categorical
    positions (the most any group has of each), the positions it lacks padding.

    Attributes:
        kinds: `SlotKinds` of the `G = F + I + C` positions.
        cols: `(groups, G)` the slot at each position (0 for padding).
        valid: `(groups, G)` bool, False for padding.
        first: `(groups,)` each group's first slot, whose use says which trials use it.
        draw_columns: `(groups, 1 + 3G)` for each uniform a position reads (its mixture
            component, then per position a normal, a keep-or-redraw and a choice), the
            column of the shared draw that the group's own block of `uniforms_per_draw`
            columns would give it, in the group's slot order (0 for padding).
        draw_width: the shared draw's columns, every group's block side by side.
        targets: `(groups, G)` the slot each position's winner goes to; padding goes to
            one column past the last slot, which is dropped.
    """

    def __init__(self, kinds: SlotKinds, groups: list[np.ndarray]):
        by_kind = [[g[kinds.kind[g] == k] for k in range(3)] for g in groups]
        counts = [max(len(parts[k]) for parts in by_kind) for k in range(3)]
        self.kinds = SlotKinds.of(np.repeat(np.arange(3), counts))
        width = sum(counts)
        self.cols = np.zeros((len(groups), width), np.int32)
        self.valid = np.zeros((len(groups), width), bool)
        self.draw_columns = np.zeros((len(groups), 1 + 3 * width), np.int32)
        self.targets = np.full((len(groups), width), kinds.kind.shape[0], np.int32)
        offset = 0
        for i, (group, parts) in enumerate(zip(groups, by_kind)):
            dims, place = len(group), {int(slot): j for j, slot in enumerate(group)}
            self.draw_columns[i, 0] = offset
            for k, part in enumerate(parts):
                for n, slot in enumerate(part):
                    position = sum(counts[:k]) + n
                    own = place[int(slot)]  # the slot's place in the group's own order
                    self.cols[i, position] = self.targets[i, position] = slot
                    self.valid[i, position] = True
                    for block in range(3):
                        self.draw_columns[i, 1 + block * width + position] = (
                            offset + 1 + block * dims + own)
            offset += uniforms_per_draw(dims)
        self.first = np.asarray([g[0] for g in groups], np.int32)
        self.draw_width = offset

    def arrays(self) -> tuple[np.ndarray, ...]:
        """What `one_group` maps over: `(cols, valid, first, draw_columns)`."""
        return self.cols, self.valid, self.first, self.draw_columns


def _group_batch(spec: SearchSpace, kinds: SlotKinds, cols: jax.Array, valid: jax.Array,
                 first: jax.Array, observed: Observations, trials: Trials, draws: jax.Array,
                 batch: int, n_candidates: int, prior_weight: float,
                 overall_below: jax.Array) -> jax.Array:
    """`(batch, G)` unit values of one group's slots (`cols`, `valid`: its positions in
    `_GroupLayout`): each row the best of `n_candidates` draws from the group's `l` by
    `l / g` (made from the uniforms `draws`), over the trials that use the group (those
    that use slot `first`), the good ones among them their own best and those in
    `overall_below`. The estimators see the group's slots alone."""
    eligible = observed.active[:, first]
    own = observed.gathered(cols, valid, kinds, used=eligible)
    below, above = split(trials, eligible)
    below = below | (overall_below & eligible)  # as Optuna's `group=True`
    # The good group: at most GAMMA_CAP rows, the best (in trial order, which its recency
    # weights read); the two rules together may give more, and the rest are bad ones.
    rows, members = best_rows(trials.losses, below, GAMMA_CAP)
    above = (above | below) & ~jnp.zeros_like(below).at[rows].max(members)
    good = ParzenEstimator(own.rows(rows), members, prior_weight)
    bad = ParzenEstimator(own, above, prior_weight)
    units, _ = good.units_from(draws)
    # Candidates through the space's encoding (an integer's value and bin, a choice's
    # rank), the other slots at their lowest values, which nothing here reads.
    dropped = len(spec.paths)  # padding's column, one past the slots
    full = jnp.zeros((units.shape[0], dropped + 1), jnp.float32).at[
        :, jnp.where(valid, cols, dropped)].set(units)[:, :dropped]
    x = Observations(spec, observed.kinds, jax.vmap(spec.from_unit)(full))
    x = x.gathered(cols, valid, kinds, used=True)  # every candidate uses the group's slots
    score = good.log_density(x, None) - bad.log_density(x, None)  # (count,)
    best = jnp.argmax(score.reshape(batch, n_candidates), axis=-1)
    return x.units[jnp.arange(batch) * n_candidates + best]


def _model_batch(spec: SearchSpace, kinds: SlotKinds, with_prior: bool,
                 trials: Trials, key: jax.Array, batch: int, n_candidates: int,
                 prior_weight: float) -> Config:
    """`batch` proposals, each the best of `n_candidates` draws from `l` by `l / g`."""
    observed = Observations(spec, kinds, trials.configs)
    below, above = split(trials)
    rows, members = best_rows(trials.losses, below, GAMMA_CAP)  # at most GAMMA_CAP
    good = ParzenEstimator(observed.rows(rows), members, prior_weight)
    bad = ParzenEstimator(observed, above, prior_weight)
    count = batch * n_candidates
    key_draw, key_prior = jax.random.split(key)
    candidates, from_prior = good.sample(spec, key_draw, count)
    if with_prior:  # the prior's own component draws from the space's prior
        prior = _base.map_rows(spec.sample_prior, jax.random.split(key_prior, count))
        candidates = jax.tree.map(lambda p, c: jnp.where(
            from_prior.reshape(-1, *([1] * (c.ndim - 1))), p, c), prior, candidates)
    x = Observations(spec, kinds, candidates)
    prior_l = jax.vmap(spec.log_prior)(candidates) if with_prior else None
    score = good.log_density(x, prior_l) - bad.log_density(x, None)  # (count,)
    best = jnp.argmax(score.reshape(batch, n_candidates), axis=-1)
    rows = jnp.arange(batch) * n_candidates + best
    return jax.tree.map(lambda c: c[rows], candidates)
