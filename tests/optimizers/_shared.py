"""Spaces, a toy loss and cached jitted optimisers shared by the optimiser tests.

Compiling an optimiser's ask takes seconds on CPU (mostly the space's PRNG programs), so
each (optimiser, space, arguments) is built and jitted once per session.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np

import jaxnas as jn
from jaxnas import optimizers

SPACES = {
    # Every parameter kind, a prior on each, fidelity 1..27 (rungs 1, 3, 9, 27).
    "mixed27": lambda: {
        "x": jn.Float(0.0, 1.0, prior=0.3),
        "s": jn.Float(-1.0, 1.0, step=0.5, prior=0.5),  # five values: -1, -0.5, ..., 1
        "n": jn.Integer(1, 64, log=True, prior=8),
        "c": jn.Categorical(("a", "b", "c"), prior=1),
        "z": jn.IntegerFidelity(1, 27),
    },
    "plain81": lambda: {"x": jn.Float(0.0, 1.0), "z": jn.IntegerFidelity(1, 81)},
    "plain27": lambda: {"x": jn.Float(0.0, 1.0), "z": jn.IntegerFidelity(1, 27)},
    "no_fidelity": lambda: {"x": jn.Float(0.0, 1.0), "c": jn.Categorical((1, 2, 3))},
}


@functools.cache
def space(name: str) -> jn.SearchSpace:
    return jn.compile(SPACES[name]())


@functools.cache
def jitted(name: str, space_name: str, **kwargs):
    """`(optimizer, jit(ask), jit(tell))` for `optimizers.get(name, space(space_name), ...)`.

    ask and tell may be traced once each: a second trace (a recompile) fails the test.
    """
    opt = optimizers.get(name, space(space_name), **kwargs)
    return (opt, jax.jit(chex.assert_max_traces(opt.ask, n=1)),
            jax.jit(chex.assert_max_traces(opt.tell, n=1)))


def toy_loss(configs: jn.Config, fidelities: jax.Array) -> jax.Array:
    """A deterministic loss of a batch: best near x = 0.7, lower at higher fidelity."""
    return jnp.square(configs["x"] - 0.7) + 0.1 / fidelities


def drive(ask, tell, state, key, steps: int, loss=toy_loss):
    """Runs `steps` rounds of ask -> loss -> tell; returns the state and host proposals."""
    history = []
    for step_key in jax.random.split(key, steps):
        state, proposals = ask(state, step_key)
        state = tell(state, proposals.trial_ids, loss(proposals.configs, proposals.fidelities))
        history.append(jax.device_get(proposals))
    return state, history


def rungs_served(history) -> list[tuple[int, float]]:
    """`(number of valid proposals, fidelity)` of each ask."""
    out = []
    for proposals in history:
        valid = np.asarray(proposals.valid)
        fidelity = np.asarray(proposals.fidelities)[valid]
        assert np.all(fidelity == fidelity[0]), "one ask serves one rung"
        out.append((int(valid.sum()), float(fidelity[0])))
    return out


def problem_search(problem, opt, evaluations: int):
    """A whole search of `opt` on a `jn.problems` problem, one proposal per ask, as a pure
    `key -> best loss` (jit or vmap it): `lax.scan` over ask -> evaluate -> tell."""

    def step(state, key):
        ask_key, evaluate_key = jax.random.split(key)
        state, proposals = opt.ask(state, ask_key)
        losses = jax.vmap(problem.evaluate)(proposals.configs, proposals.fidelities,
                                            jax.random.split(evaluate_key, 1))
        return opt.tell(state, proposals.trial_ids, losses), None

    def run(key):
        state, _ = jax.lax.scan(step, opt.init(key), jax.random.split(key, evaluations))
        return jnp.nanmin(state.trials.losses)

    return run
