"""Optuna's quick start moved to jaxnas: define-by-run `suggest_*` calls become a space.

Run: pip install -e ".[examples]" && python examples/from_optuna.py

Optuna's first example minimises `(x - 2) ** 2`:

    def objective(trial):
        x = trial.suggest_float("x", -10, 10)
        return (x - 2) ** 2

    study = optuna.create_study()
    study.optimize(objective, n_trials=100)
    study.best_params

and its second picks a classifier, each with hyperparameters of its own (a conditional
space), maximising cross-validated accuracy:

    def objective(trial):
        classifier = trial.suggest_categorical("classifier", ["SVC", "RandomForest"])
        if classifier == "SVC":
            svc_c = trial.suggest_float("svc_c", 1e-10, 1e10, log=True)
            model = SVC(C=svc_c, gamma="auto")
        else:
            rf_max_depth = trial.suggest_int("rf_max_depth", 2, 32, log=True)
            model = RandomForestClassifier(max_depth=rf_max_depth, n_estimators=10)
        return cross_val_score(model, X, y, cv=3).mean()

    study = optuna.create_study(direction="maximize")

In jaxnas the `suggest_*` calls become the space, given up front: each `suggest_float` a
`jn.Float`, `suggest_int` a `jn.Integer` (`step=` and `log=` as in Optuna), and the branch on
`suggest_categorical` a `jn.Categorical` whose choices are the branches' own parameters; the
objective takes the values by name. TPE is Optuna's default sampler and jaxnas's
`optimizer="tpe"`; `direction="maximize"` is `objectives={"accuracy": "maximize"}`.

Options: --trials (per study), --seed, --root.
"""

import argparse
import tempfile
from pathlib import Path

from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import cross_val_score
from sklearn.svm import SVC

import jaxnas as jn

X, Y = load_iris(return_X_y=True)


def quadratic(x):
    return (x - 2) ** 2


def classifier_accuracy(classifier):
    """One branch's values arrive as a dict: the SVC's `C`, or the forest's `max_depth`."""
    if classifier["name"] == "SVC":
        model = SVC(C=classifier["C"], gamma="auto")
    else:
        model = RandomForestClassifier(max_depth=classifier["max_depth"], n_estimators=10,
                                       random_state=0)
    return {"accuracy": cross_val_score(model, X, Y, cv=3).mean()}


CLASSIFIERS = {"classifier": jn.Categorical([
    {"name": "SVC", "C": jn.Float(1e-10, 1e10, log=True)},
    {"name": "RandomForest", "max_depth": jn.Integer(2, 32, log=True)},
])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default=None)
    args = parser.parse_args()
    root = Path(args.root or tempfile.mkdtemp(prefix="jaxnas-from-optuna-"))

    result = jn.run(quadratic, {"x": jn.Float(-10, 10)}, root_directory=root / "quadratic",
                    optimizer="tpe", max_evaluations=args.trials, seed=args.seed)
    best = result.incumbent
    print(f"quadratic: best x {best.config['x']:.4f}, (x - 2)^2 = {best.loss:.2e} after "
          f"{len(result.trials)} trials")

    result = jn.run(classifier_accuracy, CLASSIFIERS, root_directory=root / "classifiers",
                    optimizer="tpe", objectives={"accuracy": "maximize"},
                    max_evaluations=args.trials, seed=args.seed)
    best = result.incumbent
    print(f"classifiers: best {best.config['classifier']}, accuracy "
          f"{best.objectives['accuracy']:.4f} after {len(result.trials)} trials")
    print(f"results in {root} (jn.load_results(root / 'classifiers', as_frame=True) is "
          f"Optuna's trials_dataframe())")


if __name__ == "__main__":
    main()
