"""`jn.report(root)` and `python -m jaxnas report ROOT`: a run as one self-contained HTML page.

The page needs no network: Plotly's JavaScript is embedded once and every figure is a
Plotly div (the `[plot]` extra). Its sections, each a `<section id=...>`:

- `overview`: what `python -m jaxnas status` prints;
- `progress`: the best loss so far against the fidelity spent, the cost and the wall-clock
  time;
- `trials`: every trial's loss by its fidelity, a promoted configuration's trials joined;
- `curves`: the learning curves the evaluations reported (`jn.SupervisedTask`'s
  `val_curve` and `train_curve`), a promoted configuration drawn once, by its last trial,
  whose curve holds its ancestors' epochs;
- `importance`: fANOVA's share of the loss's variance per decision (`_importance`);
- `parallel`: parallel coordinates of the most important decisions and the loss;
- `top`: the best trials at the highest fidelity, resolved (architectures as calls);
- `pareto`: with several objectives, the non-dominated trials;
- `failures`: failed and infeasible trials with their errors.

A run that is still going is reported as far as it has finished, and the page says so. The
report only reads the run: nothing in the folder changes but the page written.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jaxnas.run._importance import Importance, importance
from jaxnas.run._objectives import Objectives
from jaxnas.run._records import (FAILED, FINISHED, INCUMBENT, INFEASIBLE, TrialRecord,
                                 best_trial, pareto_trials)
from jaxnas.run._report import _entries, _stored_space, summarise
from jaxnas.run._storage import RunStore
from jaxnas.space import Categorical

SECTIONS = ("overview", "progress", "trials", "curves", "importance", "parallel", "top",
            "pareto", "failures")
TOP = 10  # trials in the table of the best
MAX_CURVES = 200  # learning curves drawn, the best configurations' first
MAX_AXES = 8  # decisions in the parallel coordinates, the most important first


def report(root: str | Path, out: str | Path | None = None, *,
           storage: str | None = None) -> Path:
    """Writes a run's HTML report and returns its path (`jn.report`).

    Args:
        root: The run folder.
        out: Where to write the page; by default `ROOT/report.html`.
        storage: the run's database URL, as for `jn.load_results`.

    Raises:
        FileNotFoundError: no run in `root`.
        ImportError: the `[plot]` extra (Plotly, Optuna, scikit-learn) is not installed.
    """
    root = Path(root)
    with RunStore(root, create=False, storage=storage) as store:
        trials = store.all_trials()
        description = json.loads(store.get_meta("run") or "{}")
    try:
        import plotly  # noqa: F401, PLC0415 - the [plot] extra
    except ImportError as error:
        raise ImportError("jn.report needs Plotly: pip install 'jaxnas[plot]'") from error
    page = _Page(root, trials, description, storage)
    path = Path(out) if out is not None else root / "report.html"
    path.write_text(page.render(), encoding="utf-8")
    return path


class _Page:
    """The report's sections for one run, read once."""

    def __init__(self, root: Path, trials: list[TrialRecord], description: dict,
                 storage: str | None = None):
        self.root, self.description, self.storage = root, description, storage
        self.objectives = Objectives.parse(description.get("objectives"))
        self.space = _stored_space(root, storage)
        self.all = trials
        self.done = sorted((t for t in trials if t.status in FINISHED and t.finished),
                           key=lambda t: (t.finished, t.trial_id))
        first, sign = self.objectives.names[0], float(self.objectives.signs()[0])
        self.label = ("loss" if not self.objectives.several
                      else f"{first} ({self.objectives.directions[0]}d)")
        # What the optimiser minimised: the loss, or the first objective signed.
        self.score = {t.trial_id: (t.loss if not self.objectives.several
                                   else sign * t.objectives.get(first, math.nan))
                      for t in self.done if t.succeeded and t.feasible is not False}
        self.importance: Importance | None = None
        self.importance_error = ""
        try:
            self.importance = importance(self.done, self.space, self.score)
        except ImportError as error:  # the [plot] extra without Optuna or scikit-learn
            self.importance_error = f"{error} (pip install 'jaxnas[plot]')"

    # ------------------------------------------------------------------- page

    def render(self) -> str:
        from plotly.offline import get_plotlyjs  # noqa: PLC0415

        sections = [self._overview(), self._progress(), self._trials(), self._curves(),
                    self._importance(), self._parallel(), self._top(), self._pareto(),
                    self._failures()]
        unfinished = len(self.all) - len(self.done)
        banner = (f'<p class="banner" id="still-running">This run is not finished: '
                  f'{unfinished} trial(s) are still running or pending. The report shows '
                  f'the {len(self.done)} finished ones.</p>' if unfinished else "")
        title = f"jaxnas report: {self.root}"
        nav = " · ".join(f'<a href="#{name}">{name}</a>' for name in SECTIONS)
        return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{_e(title)}</title><style>{_STYLE}</style>"
                f"<script>{get_plotlyjs()}</script></head><body>"
                f"<h1>{_e(title)}</h1><p class=\"meta\">written "
                f"{_e(time.strftime('%Y-%m-%d %H:%M:%S'))}</p>{banner}<nav>{nav}</nav>"
                + "".join(sections) + "</body></html>\n")

    # --------------------------------------------------------------- sections

    def _overview(self) -> str:
        return _section("overview", "Overview",
                        f"<pre>{_e(summarise(self.root, TOP, storage=self.storage))}</pre>")

    def _progress(self) -> str:
        from plotly.subplots import make_subplots  # noqa: PLC0415
        import plotly.graph_objects as go  # noqa: PLC0415

        if not self.score:
            return _section("progress", "Best so far", _empty("no successful trial yet"))
        spent = {"fidelity spent": 0.0, "cost spent": 0.0, "seconds since the start": 0.0}
        level = {t.trial_id: t.fidelity or 0.0 for t in self.done}
        start = min((t.created or t.finished) for t in self.done)
        xs = {name: [] for name in spent}
        ys, best = [], math.inf
        for t in self.done:
            parent = level.get(t.parent_id, 0.0) if t.parent_id >= 0 else 0.0
            spent["fidelity spent"] += (t.fidelity or 0.0) - parent
            spent["cost spent"] += t.cost or 0.0
            spent["seconds since the start"] = t.finished - start
            if t.trial_id not in self.score:
                continue
            best = min(best, self.score[t.trial_id])
            ys.append(best)
            for name in spent:
                xs[name].append(spent[name])
        fig = make_subplots(rows=1, cols=3, subplot_titles=list(spent), shared_yaxes=True)
        for i, name in enumerate(spent, start=1):
            fig.add_trace(go.Scatter(x=xs[name], y=ys, mode="lines+markers",
                                     line_shape="hv", name=name, showlegend=False),
                          row=1, col=i)
            fig.update_xaxes(title_text=name, row=1, col=i)
        fig.update_yaxes(title_text=f"best {self.label} so far (any fidelity)", row=1, col=1)
        fig.update_layout(height=360, margin=dict(t=40, b=40))
        return _section("progress", "Best so far", _figure(fig, "progress"))

    def _trials(self) -> str:
        import plotly.graph_objects as go  # noqa: PLC0415

        shown = [t for t in self.done if t.trial_id in self.score]
        if not shown:
            return _section("trials", "Every trial", _empty("no successful trial yet"))
        fig = go.Figure()
        by_id = {t.trial_id: t for t in shown}
        xs, ys = [], []
        for t in shown:  # a promotion joined to the trial it continued
            parent = by_id.get(t.parent_id)
            if parent is not None:
                xs += [parent.fidelity or 0.0, t.fidelity or 0.0, None]
                ys += [self.score[parent.trial_id], self.score[t.trial_id], None]
        if xs:
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="promotions",
                                     line=dict(color="rgba(120,120,120,0.35)", width=1)))
        fig.add_trace(go.Scatter(
            x=[t.fidelity or 0.0 for t in shown], y=[self.score[t.trial_id] for t in shown],
            mode="markers", name="trials", text=[f"trial {t.trial_id}" for t in shown],
            marker=dict(color=list(range(len(shown))), colorscale="Viridis", size=7,
                        colorbar=dict(title="finished (order)"))))
        fig.update_layout(height=380, xaxis_title="fidelity", yaxis_title=self.label,
                          margin=dict(t=30, b=40))
        return _section("trials", "Every trial by fidelity", _figure(fig, "trials"))

    def _curves(self) -> str:
        import plotly.graph_objects as go  # noqa: PLC0415

        parents = {t.parent_id for t in self.done if t.parent_id >= 0}
        last = [t for t in self.done if t.succeeded and t.trial_id not in parents
                and _curve(t.extra.get("val_curve"))]
        if not last:
            return _section("curves", "Learning curves",
                            _empty("the evaluations reported no learning curves "
                                   "(jn.SupervisedTask stores them as val_curve)"))
        last.sort(key=lambda t: self.score.get(t.trial_id, math.inf))
        fig = go.Figure()
        for rank, t in enumerate(last[:MAX_CURVES]):
            curve = _curve(t.extra["val_curve"])
            fig.add_trace(go.Scatter(
                x=list(range(1, len(curve) + 1)), y=curve, mode="lines",
                name=f"trial {t.trial_id}", showlegend=rank < 5,
                opacity=1.0 if rank < 5 else 0.35))
        fig.update_layout(height=380, xaxis_title="epoch", yaxis_title="validation objective",
                          margin=dict(t=30, b=40))
        note = (f"<p>{min(len(last), MAX_CURVES)} of {len(last)} configurations, the best "
                f"first; a promoted one is drawn by its last trial.</p>")
        return _section("curves", "Learning curves", note + _figure(fig, "curves"))

    def _importance(self) -> str:
        import plotly.graph_objects as go  # noqa: PLC0415

        if self.importance_error:
            return _section("importance", "Hyperparameter importance",
                            _empty(self.importance_error))
        found = self.importance
        if found is None:
            return _section("importance", "Hyperparameter importance", _empty(
                "too few successful trials at any one fidelity, or no decision varies"))
        names = list(found.shares)
        fig = go.Figure(go.Bar(x=[found.shares[n] for n in names][::-1], y=names[::-1],
                               orientation="h"))
        fig.update_layout(height=120 + 28 * len(names), xaxis_title="share of variance",
                          margin=dict(t=20, b=40, l=20))
        where = "" if found.fidelity is None else f" at fidelity {found.fidelity:g}"
        rows = [[n, f"{found.shares[n]:.4f}"] for n in names]
        text = (f"<p>fANOVA (Optuna's implementation) on the {found.trials} successful "
                f"trials{where}.</p>")
        return _section("importance", "Hyperparameter importance",
                        text + _figure(fig, "importance")
                        + _table(["decision", "importance"], rows, "importance-table"))

    def _parallel(self) -> str:
        import plotly.graph_objects as go  # noqa: PLC0415

        level = self.importance.fidelity if self.importance else _top_level(self.done)
        shown = [t for t in self.done if t.trial_id in self.score and t.fidelity == level]
        paths = (list(self.importance.shares) if self.importance
                 else sorted({p for t in shown for p in t.config}))
        paths = [p for p in paths if len({t.config.get(p) for t in shown}) > 1][:MAX_AXES]
        if len(shown) < 2 or not paths:
            return _section("parallel", "Parallel coordinates",
                            _empty("fewer than two successful trials at one fidelity"))
        parameters = self.space.parameters() if self.space is not None else {}
        dimensions = []
        for path in paths:
            values = [t.config.get(path) for t in shown]
            dimension = dict(label=_short_path(path), values=values)
            param = parameters.get(path)
            if isinstance(param, Categorical):
                dimension.update(tickvals=list(range(len(param.choices))),
                                 ticktext=[_short(c) for c in param.choices])
            dimensions.append(dimension)
        scores = [self.score[t.trial_id] for t in shown]
        dimensions.append(dict(label=self.label, values=scores))
        fig = go.Figure(go.Parcoords(
            line=dict(color=scores, colorscale="Viridis_r", showscale=True),
            dimensions=dimensions))
        fig.update_layout(height=420, margin=dict(t=60, b=30, l=60, r=60))
        where = "" if level is None else f" at fidelity {level:g}"
        return _section("parallel", "Parallel coordinates",
                        f"<p>{len(shown)} successful trials{where}.</p>"
                        + _figure(fig, "parallel"))

    def _top(self) -> str:
        if self.objectives.several:
            return _section("top", "Best trials", _empty(
                "several objectives: the best trials are the Pareto front below"))
        incumbent = best_trial(self.done, INCUMBENT)
        if incumbent is None:
            return _section("top", "Best trials", _empty("no successful trial yet"))
        level = incumbent.fidelity
        best = sorted((t for t in self.done if t.trial_id in self.score
                       and t.fidelity == level), key=lambda t: self.score[t.trial_id])[:TOP]
        rows = [[t.trial_id, _number(t.fidelity), _number(self.score[t.trial_id]),
                 _entries(self.space, t)] for t in best]
        where = "" if level is None else f" at the highest fidelity ({level:g})"
        return _section("top", "Best trials",
                        f"<p>The best {len(best)} trials{where}, the incumbent first.</p>"
                        + _table(["trial", "fidelity", self.label, "configuration"], rows,
                                 "top-table"))

    def _pareto(self) -> str:
        import plotly.graph_objects as go  # noqa: PLC0415

        if not self.objectives.several:
            return _section("pareto", "Pareto front", _empty("one objective: no front"))
        names, signs = self.objectives.names, self.objectives.signs()
        front = pareto_trials(self.done, names, signs)
        if not front:
            return _section("pareto", "Pareto front", _empty("no successful trial yet"))
        on_front = {t.trial_id for t in front}
        level = front[0].fidelity
        others = [t for t in self.done if t.succeeded and t.fidelity == level
                  and t.trial_id not in on_front and all(n in t.objectives for n in names)]
        x, y = names[0], names[1]
        fig = go.Figure()
        for group, label in ((others, "dominated"), (front, "Pareto front")):
            fig.add_trace(go.Scatter(x=[t.objectives[x] for t in group],
                                     y=[t.objectives[y] for t in group], mode="markers",
                                     name=label, text=[f"trial {t.trial_id}" for t in group]))
        fig.update_layout(height=380, xaxis_title=f"{x} ({self.objectives.directions[0]})",
                          yaxis_title=f"{y} ({self.objectives.directions[1]})",
                          margin=dict(t=30, b=40))
        rows = [[t.trial_id, *(_number(t.objectives[n]) for n in names),
                 _entries(self.space, t)] for t in front]
        return _section("pareto", "Pareto front",
                        _figure(fig, "pareto")
                        + _table(["trial", *names, "configuration"], rows, "pareto-table"))

    def _failures(self) -> str:
        bad = [t for t in self.done if t.status in (FAILED, INFEASIBLE)]
        if not bad:
            return _section("failures", "Failures", _empty("no trial failed"))
        rows = [[t.trial_id, t.status, _number(t.fidelity), t.error or "?",
                 _entries(self.space, t)] for t in bad]
        return _section("failures", "Failures",
                        f"<p>{len(bad)} trial(s) failed or broke a constraint; a failed "
                        f"one's traceback is in jn.load_results(root).</p>"
                        + _table(["trial", "status", "fidelity", "error", "configuration"],
                                 rows, "failures-table"))


# ------------------------------------------------------------------ helpers

def _section(name: str, title: str, body: str) -> str:
    return f'<section id="{name}"><h2>{_e(title)}</h2>{body}</section>'


def _empty(why: str) -> str:
    return f'<p class="empty">{_e(why)}.</p>'


def _figure(fig: Any, name: str) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"{name}-plot",
                       config={"displaylogo": False, "responsive": True})


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], name: str) -> str:
    head = "".join(f"<th>{_e(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(str(v))}</td>" for v in row) + "</tr>"
                   for row in rows)
    return f'<table id="{name}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _curve(values: Any) -> list[float]:
    """A stored curve up to its last finite point (an untrained epoch is NaN)."""
    if not isinstance(values, (list, tuple)):
        return []
    points = [float(v) if isinstance(v, (int, float)) else math.nan for v in values]
    while points and not math.isfinite(points[-1]):
        points.pop()
    return points


def _top_level(trials: Sequence[TrialRecord]) -> float | None:
    levels = [t.fidelity for t in trials if t.succeeded and t.fidelity is not None]
    return max(levels) if levels else None


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _short(value: Any, limit: int = 24) -> str:
    text = getattr(value, "__name__", None) or str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short_path(path: str, limit: int = 28) -> str:
    return path if len(path) <= limit else "…" + path[-(limit - 1):]


def _e(text: str) -> str:
    return html.escape(text, quote=True)


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px;
       color: #222; padding: 0 1rem; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; border-bottom: 1px solid #ddd; }
section { margin-bottom: 2.5rem; }
nav a { margin: 0 0.2rem; }
pre { background: #f6f6f6; padding: 0.8rem; overflow-x: auto; font-size: 0.85rem; }
table { border-collapse: collapse; font-size: 0.85rem; width: 100%; }
th, td { border: 1px solid #ddd; padding: 0.3rem 0.5rem; text-align: left;
         vertical-align: top; }
th { background: #f0f0f0; }
.banner { background: #fff3cd; border: 1px solid #e0c36a; padding: 0.6rem; }
.meta, .empty { color: #666; }
"""
