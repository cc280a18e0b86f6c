"""jaxnas quickstart: a joint architecture and hyperparameter space, sampled as a population.

Run: python examples/quickstart.py

It defines a NePS-style space (a Flax MLP whose depth, widths and activations are searched,
plus the optimiser's hyperparameters, with priors), compiles it to fixed shapes, samples
100,000 configurations with one jit-compiled vmap, compares uniform and prior sampling,
groups configurations into buckets of equal structure, and resolves one configuration into
a Flax module (`jn.nn.build`, layers named by their path in the space) that runs. The
optimisers and `jn.run` build on exactly these pieces.
"""

import collections
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import jaxnas as jn


def _mlp_layers(depth: int, hidden: jn.Operation, activation: jn.Categorical) -> list:
    """`depth` hidden blocks, each width and activation an independent copy, then 10 logits."""
    blocks = [[hidden.resample(), activation.resample()] for _ in range(depth)]
    return [layer for block in blocks for layer in block] + [jn.Operation(nn.Dense, kwargs={"features": 10})]


def mlp_space() -> dict:
    """An MLP for 64-pixel digits: 1-3 hidden layers, each width and activation searched."""
    width = jn.Integer(16, 256, log=True, prior=64, prior_confidence="medium")
    activation = jn.Categorical(
        (jn.Operation(nn.relu), jn.Operation(nn.gelu), jn.Operation(nn.tanh)), prior=0
    )
    hidden = jn.Operation(nn.Dense, kwargs={"features": width.resample()})
    layers = jn.Categorical(
        tuple((_mlp_layers(depth, hidden, activation),) for depth in (1, 2, 3)), prior=1
    )
    return {
        "model": jn.Operation(nn.Sequential, args=layers),
        "learning_rate": jn.Float(1e-4, 1e-1, log=True, prior=3e-3, prior_confidence="high"),
        "weight_decay": jn.Float(1e-6, 1e-2, log=True),
        "batch_size": jn.Categorical((32, 64, 128), static=True),
        "epochs": jn.IntegerFidelity(1, 27),
    }


def main() -> None:
    spec = jn.compile(mlp_space)
    print(spec)
    print("decisions:", *spec.paths[:6], "...", sep="\n  ")

    population = 100_000
    keys = jax.random.split(jax.random.key(0), population)
    sample = jax.jit(jax.vmap(spec.sample))
    sample_prior = jax.jit(jax.vmap(spec.sample_prior))
    jax.block_until_ready(sample(keys))  # compile once
    start = time.perf_counter()
    configs = jax.block_until_ready(sample(keys))
    seconds = time.perf_counter() - start
    print(f"\nsampled {population:,} configurations in {seconds * 1e3:.1f} ms "
          f"({population / seconds:,.0f} configs/s, one jit-compiled vmap)")

    prior_configs = sample_prior(keys)
    log_prior = jax.jit(jax.vmap(spec.log_prior))
    for name, batch in (("uniform", configs), ("prior", prior_configs)):
        lr = np.asarray(batch["learning_rate"])
        print(f"{name:>8}: median learning rate {np.median(lr):.2e}, "
              f"mean log-prior {float(jnp.mean(log_prior(batch))):+.2f}")

    buckets = collections.Counter(spec.buckets(jax.tree.map(lambda x: x[:2000], configs)))
    depths = collections.Counter(np.asarray(configs["model.args"][:2000]).tolist())
    print(f"\n2,000 configurations fall into {len(buckets)} buckets of equal structure "
          f"(every width is static here); hidden depth 1/2/3: "
          f"{depths[0]}/{depths[1]}/{depths[2]}")

    first = jax.tree.map(lambda x: x[0], prior_configs)
    resolved = spec.resolve(first, fidelity=3)
    print("\na configuration drawn from the prior, resolved (fidelity set to 3 epochs):")
    for name, value in resolved.items():
        print(f"  {name}: {value if name != 'model' else _describe(value)}")

    model = resolved["model"]
    x = jnp.ones((4, 64))
    params = model.init(jax.random.key(1), x)
    n_params = sum(p.size for p in jax.tree.leaves(params))
    print(f"\nthe resolved model runs: output shape {model.apply(params, x).shape}, "
          f"{n_params:,} parameters in layers {', '.join(params['params'])}")


def _describe(model: jn.nn.Built) -> str:
    """`Dense(64) -> relu -> ...` from the operation tree the module was built from."""
    parts = []
    for layer in model.operation.args[0]:
        features = layer.kwargs.get("features")
        parts.append(f"Dense({features})" if features else layer.operator.__name__)
    return " -> ".join(parts)


if __name__ == "__main__":
    main()
