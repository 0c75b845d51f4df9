"""CLEVR-Robot's own app figures: ball positions, push arrows, the top view, per-ball errors.

The app reaches these through the environment interface (``ClevrEnvironment.episode_figures``,
``action_label``, ``topview_image``, ``step_errors_figure``, ``views()``), never by importing this
module; ``kalm.ui.plots`` serves the historical names (``positions_figure``, ``BALL_HEX``, ...)
from here on first use.

Balls keep the environment's order and colours (red, blue, green, purple, cyan). Episode figures
take observations ``(T + 1, 10)`` and actions ``(T,)``; ``step`` marks one step on every figure
(the app's step slider), and ``compare`` draws a second trajectory (the simulator's replay of an
imagined rollout) dashed beside the first.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kalm.envs.clevr.model import BALL_COLORS_RGBA, BALL_RADIUS, WORKBENCH
from kalm.envs.clevr.sim import N_BALLS, N_DIRECTIONS, PUSH_DIRECTIONS
from kalm.envs.clevr.goals.spec import COLORS
from kalm.ui.plots import _HEIGHT, _MARGIN, _STEP_LINE, _finite, _rgba, entity_errors_figure

__all__ = [
    "BALL_HEX",
    "DIRECTION_NAMES",
    "action_label",
    "positions_figure",
    "actions_figure",
    "topview_figure",
    "topview_image",
    "step_errors_figure",
]

BALL_HEX: tuple[str, ...] = tuple(
    "#{:02x}{:02x}{:02x}".format(*(round(255 * c) for c in rgba[:3])) for rgba in BALL_COLORS_RGBA
)
# Push direction d of action ball * 8 + d (kalm.envs.clevr.PUSH_DIRECTIONS); +y is "behind".
DIRECTION_NAMES: tuple[str, ...] = (
    "right", "behind", "left", "front",
    "right-behind", "left-behind", "right-front", "left-front",
)


def action_label(action: int) -> str:
    """``"push red right"`` for an action index."""
    ball, d = divmod(int(action), N_DIRECTIONS)
    return f"push {COLORS[ball]} {DIRECTION_NAMES[d]}"


def positions_figure(
    observations: np.ndarray,
    step: int | None = None,
    compare: np.ndarray | None = None,
    names: tuple[str, str] = ("", "simulator"),
    title: str = "Ball positions",
) -> go.Figure:
    """x and y of each ball over the steps (two panels); ``compare`` dashed, ``step`` marked."""
    obs = _finite(observations)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("x (left → right)", "y (front → behind)"))
    fig.update_annotations(font_size=12, x=0.0, xanchor="left")
    t = np.arange(len(obs))
    series = [(obs, "solid", names[0])]
    if compare is not None:
        series.append((_finite(compare), "dot", names[1]))
    for o, dash, suffix in series:
        for b in range(N_BALLS):
            for row, k in ((1, 2 * b), (2, 2 * b + 1)):
                label = f"{COLORS[b]} {suffix}".strip()
                fig.add_trace(go.Scatter(
                    x=np.arange(len(o)), y=o[:, k], mode="lines+markers", name=COLORS[b],
                    legendgroup=COLORS[b], showlegend=row == 1 and dash == "solid",
                    line=dict(color=BALL_HEX[b], dash=dash, width=2), marker=dict(size=4),
                    hovertemplate=f"{label}<br>step %{{x}}<br>%{{y:.3f}}<extra></extra>",
                ), row=row, col=1)
    if step is not None:
        for row in (1, 2):
            fig.add_vline(x=int(step), line=_STEP_LINE, row=row, col=1)
    fig.update_xaxes(title_text="step", row=2, col=1, range=[-0.3, max(len(t) - 0.7, 1)])
    fig.update_layout(title=title, height=_HEIGHT + 90, margin=_MARGIN,
                      legend=dict(orientation="h", y=-0.18), hovermode="closest")
    return fig


def actions_figure(actions: Sequence[int], step: int | None = None,
                   title: str = "Actions") -> go.Figure:
    """One arrow per step in the pushed ball's row, pointing the way it was pushed as seen in the
    top view (right = +x, up = +y, "behind")."""
    acts = [int(a) for a in np.asarray(actions).reshape(-1)]
    balls = [a // N_DIRECTIONS for a in acts]
    dirs = [a % N_DIRECTIONS for a in acts]
    fig = go.Figure()
    fig.add_trace(go.Scatter(  # small dots that carry the hover text
        x=list(range(len(acts))), y=[COLORS[b] for b in balls], mode="markers",
        marker=dict(size=7, color=[BALL_HEX[b] for b in balls], opacity=0.35),
        text=[f"step {t}: {action_label(a)} (action {a})" for t, a in enumerate(acts)],
        hovertemplate="%{text}<extra></extra>", showlegend=False,
    ))
    length = 20  # pixels
    for t, (b, d) in enumerate(zip(balls, dirs)):
        dx, dy = PUSH_DIRECTIONS[d] / np.linalg.norm(PUSH_DIRECTIONS[d])
        # The arrow ends at (t, ball) shifted by half its length, so that it is centred there.
        fig.add_annotation(
            x=t, y=COLORS[b], ax=-dx * length, ay=dy * length, xshift=dx * length / 2,
            yshift=dy * length / 2, showarrow=True, arrowhead=2, arrowsize=1.1, arrowwidth=2.2,
            arrowcolor=BALL_HEX[b], text="",
        )
    if step is not None and acts:
        fig.add_vline(x=min(int(step), len(acts) - 1), line=_STEP_LINE)
    fig.update_yaxes(categoryorder="array", categoryarray=list(COLORS), range=[-0.6, N_BALLS - 0.4],
                     title_text="ball")
    fig.update_xaxes(title_text="step", range=[-0.8, max(len(acts) - 0.2, 1)])
    fig.update_layout(title=title, height=280, margin=_MARGIN)
    return fig


def topview_figure(
    observations: np.ndarray,
    step: int | None = None,
    compare: np.ndarray | None = None,
    names: tuple[str, str] = ("", "simulator"),
    title: str = "Top view",
) -> go.Figure:
    """Each ball's path on the workbench seen from above; balls drawn to scale at ``step``."""
    obs = _finite(observations)
    x0, x1, y0, y1 = WORKBENCH
    fig = go.Figure()
    fig.add_shape(type="rect", x0=x0, x1=x1, y0=y0, y1=y1,
                  line=dict(color="#888", width=1), fillcolor="rgba(200,200,200,0.15)",
                  layer="below")
    series = [(obs, "solid", names[0])]
    if compare is not None:
        series.append((_finite(compare), "dot", names[1]))
    for o, dash, suffix in series:
        for b in range(N_BALLS):
            label = f"{COLORS[b]} {suffix}".strip()
            fig.add_trace(go.Scatter(
                x=o[:, 2 * b], y=o[:, 2 * b + 1], mode="lines+markers", name=COLORS[b],
                legendgroup=COLORS[b], showlegend=dash == "solid",
                line=dict(color=BALL_HEX[b], dash=dash, width=2),
                marker=dict(size=5, symbol=["circle-open"] + ["circle"] * (len(o) - 1),
                            line=dict(width=1)),
                customdata=np.arange(len(o)),
                hovertemplate=(f"{label}<br>step %{{customdata}}<br>"
                               "(%{x:.3f}, %{y:.3f})<extra></extra>"),
            ))
            if len(o) > 1 and np.all(np.isfinite(o[-1, 2 * b: 2 * b + 2])):
                fig.add_trace(go.Scatter(
                    x=[o[-1, 2 * b]], y=[o[-1, 2 * b + 1]], mode="markers", showlegend=False,
                    legendgroup=COLORS[b],
                    marker=dict(size=10, color=BALL_HEX[b], line=dict(color="#222", width=1)),
                    hoverinfo="skip"))
    if step is not None:
        s = min(max(int(step), 0), len(obs) - 1)
        for b in range(N_BALLS):
            cx, cy = obs[s, 2 * b], obs[s, 2 * b + 1]
            if np.isfinite(cx) and np.isfinite(cy):
                fig.add_shape(type="circle", x0=cx - BALL_RADIUS, x1=cx + BALL_RADIUS,
                              y0=cy - BALL_RADIUS, y1=cy + BALL_RADIUS,
                              line=dict(color=BALL_HEX[b], width=2),
                              fillcolor=_rgba(BALL_HEX[b], 0.25))
    pad = BALL_RADIUS + 0.05
    fig.update_xaxes(range=[x0 - pad, x1 + pad], title_text="x", zeroline=False, constrain="domain")
    fig.update_yaxes(range=[y0 - pad, y1 + pad], title_text="y (behind ↑)", zeroline=False,
                     scaleanchor="x", scaleratio=1)
    fig.update_layout(title=title, height=_HEIGHT + 60, margin=_MARGIN,
                      legend=dict(orientation="h", y=-0.15))
    return fig


def topview_image(observations: np.ndarray, size: int = 420) -> np.ndarray:
    """A cheap top view (an RGB array, no plotly): the workbench, each ball's path so far and the
    balls to scale at the last state. For a live view redrawn at every generated step."""
    from PIL import Image, ImageDraw

    obs = _finite(observations)
    x0, x1, y0, y1 = WORKBENCH
    pad = BALL_RADIUS + 0.05
    span = max(x1 - x0, y1 - y0) + 2 * pad
    scale = size / span
    height = int(round((y1 - y0 + 2 * pad) * scale))

    def px(x: float, y: float) -> tuple[float, float]:  # +y ("behind") is up
        return (x - x0 + pad) * scale, (y1 + pad - y) * scale

    img = Image.new("RGB", (size, height), "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle([px(x0, y1), px(x1, y0)], fill="#f3f3f3", outline="#888888")
    r = BALL_RADIUS * scale
    for b in range(N_BALLS):
        xy = [px(x, y) for x, y in obs[:, 2 * b: 2 * b + 2] if np.isfinite(x) and np.isfinite(y)]
        if not xy:
            continue
        if len(xy) > 1:
            draw.line(xy, fill=BALL_HEX[b], width=2)
        sx, sy = xy[0]
        draw.ellipse([sx - 3, sy - 3, sx + 3, sy + 3], outline=BALL_HEX[b], width=1)
        cx, cy = xy[-1]
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=BALL_HEX[b], outline="#222222")
    return np.asarray(img)


def step_errors_figure(per_ball: np.ndarray, tolerance: float, step: int | None = None,
                       title: str = "Per-ball error") -> go.Figure:
    """Per-ball error ``(T, 5)`` of each imagined transition against the simulator's; the
    tolerance of a realistic transition as a line. NaN rows (unmeasurable steps) are gaps."""
    return entity_errors_figure(per_ball, COLORS, tolerance, step, colors=BALL_HEX, title=title)
