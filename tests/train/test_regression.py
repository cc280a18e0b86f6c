"""`SupervisedTask(kind="regression")`: its objective is the validation mean squared error.

A linear model (`nn.Dense(1)`) keeps the check independent of jaxnas: its predictions are
`x @ kernel + bias`, computed here in numpy from the trained parameters.
"""

import flax.linen as nn
import jax
import numpy as np
import pytest

import jaxnas as jn

EPOCHS = 12
SPACE = {"model": jn.Operation(nn.Dense, args=(1,)),
         "learning_rate": jn.Float(0.1, 0.3, log=True),
         "epochs": jn.IntegerFidelity(1, EPOCHS)}


def _data(target_shape: tuple = ()):
    """Train, validation and test splits of y = x @ w + 0.3 + noise; y is `(n, *target_shape)`."""
    x_key, noise_key = jax.random.split(jax.random.key(0))
    x = np.asarray(jax.random.normal(x_key, (160, 4)))
    noise = np.asarray(jax.random.normal(noise_key, (160,)))
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.3 + 0.1 * noise).astype(np.float32)
    y = y.reshape(-1, *target_shape)
    return (x[:96], y[:96]), (x[96:128], y[96:128]), (x[128:], y[128:])


def _dense(params) -> dict:
    """The one `Dense` layer's parameters (`kernel`, `bias`) wherever the model nests them."""
    while "kernel" not in params:
        (params,) = params.values()
    return params


def _mse(params, data) -> float:
    """The mean squared error of the linear model `params` on `data`, in numpy (float64)."""
    x, y = (np.asarray(a, np.float64) for a in data)
    dense = _dense(jax.device_get(params))
    kernel, bias = (np.asarray(dense[name], np.float64) for name in ("kernel", "bias"))
    predictions = x @ kernel + bias  # (n, 1)
    return float(np.mean(np.sum((predictions.reshape(len(y), -1) - y.reshape(len(y), -1)) ** 2,
                                axis=1)))


def _task_and_config(target_shape: tuple = ()):
    train, validation, test = _data(target_shape)
    task = jn.SupervisedTask(train, validation, kind="regression", batch_size=16,
                             test_data=test)
    spec = jn.compile(SPACE)
    config = spec.sample(jax.random.key(1))
    return task.for_bucket(spec, config, masked=False), config, (validation, test)


@pytest.mark.parametrize("target_shape", [(), (1,)], ids=["targets (n,)", "targets (n, 1)"])
def test_the_objective_is_the_validation_mean_squared_error(target_shape):
    task, config, (validation, test) = _task_and_config(target_shape)
    initial = task.init(jax.random.key(2), config)
    untrained = task.evaluate(initial, config)
    state = task.train(initial, config, EPOCHS)
    metrics = task.evaluate(state, config)
    assert float(untrained["loss"]) == pytest.approx(
        _mse(initial.params, validation), rel=1e-5)
    assert float(metrics["loss"]) == pytest.approx(_mse(state.params, validation), rel=1e-5)
    assert float(metrics["test_objective"]) == pytest.approx(_mse(state.params, test), rel=1e-5)
    assert float(metrics["val_curve"][EPOCHS - 1]) == float(metrics["loss"])
    # Training fits the data: the error falls below a tenth of the untrained model's and
    # far below the variance of the targets (what predicting their mean would score).
    assert float(metrics["loss"]) < 0.1 * float(untrained["loss"])
    assert float(metrics["loss"]) < 0.1 * float(np.var(validation[1]))
    curve = np.asarray(metrics["val_curve"])
    assert curve[-1] < curve[0]


def test_a_run_reports_the_mean_squared_error_as_its_loss(tmp_path):
    train, validation, _ = _data()
    task = jn.SupervisedTask(train, validation, kind="regression", batch_size=16)
    result = jn.run(task, SPACE, optimizer="random_search", root_directory=tmp_path,
                    optimizer_kwargs={"batch_size": 2}, max_evaluations=2, seed=0)
    assert [t["status"] for t in result.trials] == ["success", "success"]
    for trial in result.trials:
        assert trial["fidelity"] == EPOCHS
        assert trial["loss"] == pytest.approx(trial["extra"]["val_curve"][EPOCHS - 1])
        assert trial["loss"] < 0.1 * float(np.var(validation[1]))


def test_regression_ignores_the_classification_objective():
    """`objective` chooses between error rate and loss for classification; regression
    always reports its loss (an error rate of a real-valued prediction means nothing)."""
    train, validation, _ = _data()
    spec = jn.compile(SPACE)
    config = spec.sample(jax.random.key(1))
    scores = []
    for objective in ("error", "loss"):
        task = jn.SupervisedTask(train, validation, kind="regression", objective=objective,
                                 batch_size=16).for_bucket(spec, config, masked=False)
        state = task.train(task.init(jax.random.key(2), config), config, 2)
        scores.append(float(task.evaluate(state, config)["loss"]))
        assert scores[-1] == pytest.approx(
            _mse(state.params, validation), rel=1e-5)
    assert scores[0] == scores[1]


@pytest.mark.parametrize("kwargs, match", [
    (dict(kind="ranking"), r"kind='ranking' must be 'classification' or 'regression'"),
    (dict(kind="regression", objective="accuracy"),
     r"objective='accuracy' must be 'error' or 'loss'"),
    (dict(kind="Regression"), r"kind='Regression' must be"),
])
def test_bad_kind_or_objective_raises_naming_it(kwargs, match):
    train, validation, _ = _data()
    with pytest.raises(ValueError, match=match):
        jn.SupervisedTask(train, validation, **kwargs)
