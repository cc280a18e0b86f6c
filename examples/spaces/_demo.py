"""Shared by the example-space scripts: sample, build and run a few architectures of each."""

import jax
import jax.numpy as jnp

import jaxnas as jn


def demo(spaces: dict, n: int = 4) -> None:
    """Samples `n` configs of each space, builds its `model` and runs a forward pass."""
    for name, (make, input_shape) in spaces.items():
        spec = jn.compile(make())
        configs = jax.vmap(spec.sample)(jax.random.split(jax.random.key(0), n))
        print(f"{name}: {len(spec.paths)} decisions ({len(spec.static_paths)} static)")
        for i in range(n):
            resolved = spec.resolve(jax.tree.map(lambda x: x[i], configs), build=False)
            module = jn.nn.build(resolved["model"])
            info = jn.nn.summary(module, input_shape)
            variables = module.init(jax.random.key(i), jnp.ones(input_shape))
            out = module.apply(variables, jnp.ones(input_shape))
            print(f"  config {i}: {info['params']:>8,} parameters, {info['flops']:>12,.0f} FLOPs,"
                  f" output {tuple(out.shape)}")
