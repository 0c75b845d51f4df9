"""Plotly figures for the app's pages: the generic ones, built from an environment's names.

Everything here works for any environment from its :class:`~kalm.envs.base.StateLayout` and
:class:`~kalm.envs.base.ActionSpec` names (``state_figure``, ``channels_figure``,
``discrete_actions_figure``, ``entity_errors_figure``, ``paths_image``) or from plain numbers
(``histogram_figure``); the environment interface's app views (``Environment.episode_figures``,
``topview_image``, ``step_errors_figure``) default to them, and an environment with views of its
own (CLEVR-Robot's top view, ball positions and push arrows) overrides those hooks in its folder.

The historical CLEVR-Robot names (``positions_figure``, ``actions_figure``, ``topview_figure``,
``topview_image``, ``step_errors_figure``, ``action_label``, ``BALL_HEX``, ``DIRECTION_NAMES``)
are still importable from here: they are looked up on first use in CLEVR-Robot's own views
(``get_env("clevr").views()``), so importing this module imports no concrete environment.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go

__all__ = [
    "BALL_HEX",
    "CATEGORY_COLORS",
    "DIRECTION_NAMES",
    "action_label",
    "actions_figure",
    "channels_figure",
    "discrete_actions_figure",
    "entity_errors_figure",
    "histogram_figure",
    "paths_image",
    "positions_figure",
    "state_figure",
    "step_errors_figure",
    "topview_figure",
    "topview_image",
]

# Served from CLEVR-Robot's views (kalm/envs/clevr/plots.py) on first use, through the registry.
_CLEVR_VIEWS = ("BALL_HEX", "DIRECTION_NAMES", "action_label", "positions_figure",
                "actions_figure", "topview_figure", "topview_image", "step_errors_figure")
_CLEVR = "clevr"

_HEIGHT = 330
_STEP_LINE = dict(color="#444", width=1, dash="dash")
# Colours of categories in stacked histograms (not the ball colours, to avoid confusion).
CATEGORY_COLORS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#b279a2", "#9d755d", "#bab0ac")
_MARGIN = dict(l=10, r=10, t=60, b=10)


def __getattr__(name: str) -> Any:
    if name in _CLEVR_VIEWS:
        from kalm.envs import get_env

        return getattr(get_env(_CLEVR).views(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _finite(obs: np.ndarray) -> np.ndarray:
    """Observations as float64 with NaN / inf turned into gaps (None in plotly)."""
    o = np.asarray(obs, dtype=np.float64)
    return np.where(np.isfinite(o), o, np.nan)


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i: i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def entity_errors_figure(errors: np.ndarray, names: Sequence[str], tolerance: float | None,
                         step: int | None = None, colors: Sequence[str] | None = None,
                         title: str = "Per-entity error") -> go.Figure:
    """Per-entity error ``(T, len(names))`` of each imagined transition against the simulator's;
    the tolerance of a realistic transition as a line (None: no line, where realism is not a
    distance). NaN rows (unmeasurable steps) are gaps."""
    names = list(names)
    colors = list(colors) if colors is not None else [
        CATEGORY_COLORS[i % len(CATEGORY_COLORS)] for i in range(len(names))]
    err = np.asarray(errors, dtype=np.float64).reshape(-1, len(names))
    fig = go.Figure()
    for b, name in enumerate(names):
        fig.add_trace(go.Bar(x=np.arange(len(err)), y=err[:, b], name=name,
                             marker_color=colors[b],
                             hovertemplate=(f"{name}<br>step %{{x}}<br>"
                                            "error %{y:.4f}<extra></extra>")))
    if tolerance is not None:
        fig.add_hline(y=tolerance, line=dict(color="#c00", dash="dash"),
                      annotation_text=f"realistic ≤ {tolerance}", annotation_position="top left")
    if step is not None and len(err):
        fig.add_vline(x=min(int(step), len(err) - 1), line=_STEP_LINE)
    fig.update_layout(title=title, barmode="group", height=_HEIGHT, margin=_MARGIN,
                      xaxis_title="step t (transition s_t → s_t+1)", yaxis_title="error",
                      legend=dict(orientation="h", y=-0.25))
    return fig

def histogram_figure(values: Sequence[float], title: str, groups: Sequence[str] | None = None,
                     marker: float | None = None, marker_text: str = "",
                     nbins: int = 30) -> go.Figure:
    """A histogram of one validity figure, stacked by ``groups`` (categories) when given."""
    v = np.asarray(values, dtype=np.float64)
    fig = go.Figure()
    if groups is None:
        fig.add_trace(go.Histogram(x=v[np.isfinite(v)], nbinsx=nbins, name=title,
                                   marker_color=CATEGORY_COLORS[0]))
    else:
        g = np.asarray(groups)
        for k, name in enumerate(dict.fromkeys(g.tolist())):
            sel = (g == name) & np.isfinite(v)
            fig.add_trace(go.Histogram(x=v[sel], nbinsx=nbins, name=str(name),
                                       marker_color=CATEGORY_COLORS[k % len(CATEGORY_COLORS)]))
        fig.update_layout(barmode="stack")
    if marker is not None:
        fig.add_vline(x=marker, line=dict(color="#c00", dash="dash"),
                      annotation_text=marker_text, annotation_position="top right")
    fig.update_layout(title=title, height=280, margin=_MARGIN, xaxis_title=title,
                      yaxis_title="rollouts", legend=dict(orientation="h", y=-0.3))
    return fig


def _step_marker(fig: go.Figure, step: int | None, rows: int = 1) -> None:
    if step is None:
        return
    for r in range(1, rows + 1):
        fig.add_shape(type="line", x0=step, x1=step, y0=0, y1=1, yref="y domain" if rows == 1
                      else f"y{'' if r == 1 else r} domain", xref="x" if r == 1 else f"x{r}",
                      line=dict(color="#888", dash="dot"))


def goal_met_marker(fig: go.Figure, step: int) -> go.Figure:
    """A dashed green line at ``step`` on every subplot of ``fig``: where the rollout's goal first
    held, for a rollout written on past it (``settle``)."""
    line = dict(color="#2a9d3a", dash="dash", width=1)
    kw = {"row": "all", "col": "all"} if fig._has_subplots() else {}
    fig.add_vline(x=int(step), line=line, **kw)
    fig.add_annotation(x=int(step), y=1, yref="paper", text="goal met", showarrow=False,
                       xanchor="left", yanchor="bottom", font=dict(color="#2a9d3a", size=10))
    return fig


def state_figure(observations: np.ndarray, layout, step: int | None = None,
                 title: str = "State", compare: np.ndarray | None = None,
                 names: tuple[str, str] = ("", "simulator")) -> go.Figure:
    """Positions over time of every entity a state layout names (entities whose slot stays all
    zeros, absent from the scene, are left out): one subplot per axis x / y / z (as many as the
    widest entity has, at most three). ``compare`` (a second trajectory, e.g. the simulator's
    replay) is drawn dotted beside the first, labelled with ``names``."""
    from plotly.subplots import make_subplots

    o = _finite(np.asarray(observations, dtype=np.float64))
    rows = max([min(3, b - a) for _, a, b in layout.groups] or [1])
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.04,
                        subplot_titles=("x", "y", "z")[:rows])
    series = [(o, "solid", names[0])]
    if compare is not None:
        series.append((_finite(np.asarray(compare, dtype=np.float64)), "dot", names[1]))
    k = 0
    for name, a, b in layout.groups:
        if not np.any(np.nan_to_num(o[:, a:b])):
            continue
        color = CATEGORY_COLORS[k % len(CATEGORY_COLORS)]
        k += 1
        for s, dash, suffix in series:
            label = f"{name} {suffix}".strip()
            for axis in range(min(3, b - a)):
                fig.add_trace(go.Scatter(x=np.arange(len(s)), y=s[:, a + axis], mode="lines",
                                         name=name, legendgroup=name,
                                         showlegend=axis == 0 and dash == "solid",
                                         line=dict(color=color, dash=dash),
                                         hovertemplate=(f"{label}<br>step %{{x}}<br>"
                                                        "%{y:.3f}<extra></extra>")),
                              row=axis + 1, col=1)
    _step_marker(fig, step, rows=rows)
    fig.update_layout(title=title, height=160 * rows, margin=dict(l=40, r=10, t=50, b=30))
    fig.update_xaxes(title_text="step", row=rows, col=1)
    return fig


def discrete_actions_figure(actions: Sequence[int], names: Sequence[str],
                            step: int | None = None, title: str = "Actions") -> go.Figure:
    """Discrete actions over time: a marker per step in the row of the action's name (only the
    actions taken get a row, in the action space's order)."""
    acts = [int(a) for a in np.asarray(actions).reshape(-1)]
    used = [names[a] for a in sorted(set(acts))]
    fig = go.Figure(go.Scatter(
        x=list(range(len(acts))), y=[names[a] for a in acts], mode="markers+lines",
        marker=dict(size=8, color=CATEGORY_COLORS[0]), line=dict(color="#bbb", width=1),
        text=[f"step {t}: {names[a]} (action {a})" for t, a in enumerate(acts)],
        hovertemplate="%{text}<extra></extra>", showlegend=False))
    _step_marker(fig, None if step is None or not acts else min(int(step), len(acts) - 1))
    fig.update_yaxes(categoryorder="array", categoryarray=used, title_text="action")
    fig.update_layout(title=title, height=max(240, 60 + 24 * len(used)),
                      margin=dict(l=40, r=10, t=50, b=30), xaxis_title="step")
    return fig


def paths_image(observations: np.ndarray, layout, size: int = 420) -> np.ndarray:
    """A cheap view from above (an RGB array, no plotly) of any environment's states: the x-y path
    of every entity of ``layout`` present in them (its first two dimensions), a ring at its start
    and a dot at the last state, scaled to fit. For a live view redrawn at every generated step."""
    from PIL import Image, ImageDraw

    o = _finite(np.asarray(observations, dtype=np.float64).reshape(-1, layout.dim))
    groups = [(n, a) for n, a, b in layout.groups
              if b - a >= 2 and np.any(np.nan_to_num(o[:, a:b]))]
    pts = np.concatenate([o[:, a: a + 2] for _, a in groups]) if groups else np.zeros((0, 2))
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    lo, hi = (pts.min(0), pts.max(0)) if len(pts) else (np.zeros(2), np.ones(2))
    span = float(max(hi - lo)) or 1.0
    pad = 0.08 * span
    scale = (size - 1) / (span + 2 * pad)
    height = int(round((hi[1] - lo[1] + 2 * pad) * scale)) + 1

    def px(x: float, y: float) -> tuple[float, float]:  # +y is up
        return (x - lo[0] + pad) * scale, (hi[1] + pad - y) * scale

    img = Image.new("RGB", (size, max(height, 1)), "white")
    draw = ImageDraw.Draw(img)
    for k, (_, a) in enumerate(groups):
        color = CATEGORY_COLORS[k % len(CATEGORY_COLORS)]
        xy = [px(x, y) for x, y in o[:, a: a + 2] if np.isfinite(x) and np.isfinite(y)]
        if not xy:
            continue
        if len(xy) > 1:
            draw.line(xy, fill=color, width=2)
        sx, sy = xy[0]
        draw.ellipse([sx - 3, sy - 3, sx + 3, sy + 3], outline=color, width=1)
        cx, cy = xy[-1]
        draw.ellipse([cx - 6, cy - 6, cx + 6, cy + 6], fill=color, outline="#222222")
    return np.asarray(img)


def channels_figure(actions: np.ndarray, names: Sequence[str], step: int | None = None,
                    title: str = "Actions") -> go.Figure:
    """Each channel of continuous actions over time."""
    a = np.asarray(actions, dtype=np.float64).reshape(len(actions), -1)
    fig = go.Figure()
    for i, name in enumerate(names):
        fig.add_trace(go.Scatter(x=np.arange(len(a)), y=a[:, i], mode="lines", name=name,
                                 line=dict(color=CATEGORY_COLORS[i % len(CATEGORY_COLORS)])))
    _step_marker(fig, step)
    fig.update_layout(title=title, height=300, margin=dict(l=40, r=10, t=50, b=30),
                      xaxis_title="step", yaxis_range=[-1.05, 1.05])
    return fig
