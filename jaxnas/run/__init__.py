"""The runner: `jn.run`'s loop and the run folder it keeps (trials in SQLite, checkpoints,
training states), and reading a run back.

Files: `_loop` (`run`, `RunResult`, `Incumbent`), `_folder` (a folder's run and its
claim), `_worker` (the event log shared by processes), `_budgets`, `_evaluators` (tasks,
pure functions, plain callables), `_checkpoints` (Orbax), `_storage` (every SQL statement
and file name), `_records` (the trial record), `_results` (`load_*`, `export_csv`),
`_report` (`summarise`, `plot`), `_html` (`report`: the HTML page), `_importance`
(fANOVA), `_warm_start` (`initial_configs`), `_imports` (`import_trials`), `_progress`
(the progress bar) and `_simulate` (`simulate`: whole searches on a pure problem as one
program).

`jaxnas/__init__.py` imports `run` from here, so `jaxnas.run` is the function `jn.run`;
`from jaxnas.run import X` still reaches this package.
"""

from jaxnas.run._html import report
from jaxnas.run._imports import import_trials
from jaxnas.run._loop import Incumbent, RunResult, run
from jaxnas.run._report import plot, summarise
from jaxnas.run._results import export_csv, load_config, load_results, load_space
from jaxnas.run._simulate import Simulation, simulate
from jaxnas.run._storage import StorageError

__all__ = ["Incumbent", "RunResult", "Simulation", "StorageError", "export_csv",
           "import_trials", "load_config", "load_results", "load_space", "plot", "report",
           "run", "simulate", "summarise"]
