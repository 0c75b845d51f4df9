"""The environment interface's app views (``Environment.action_label``, ``episode_figures``,
``topview_image``, ``step_errors_figure``, ``animated_frames``, ``views``) on both environments,
and the rule that the app reaches environments only through the interface."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kalm.envs import get_env
from kalm.envs.base import Environment

REPO = Path(__file__).resolve().parents[2]
CONCRETE = ("kalm.envs.clevr", "kalm.envs.clevr_model", "kalm.envs.metaworld", "kalm.render")


def _app_files() -> list[Path]:
    return sorted((REPO / "kalm" / "ui").glob("*.py")) + sorted((REPO / "pages").glob("*.py")) \
        + [REPO / "app.py"]


def _imported(tree: ast.AST) -> list[str]:
    from .test_import_rule import _imports

    return _imports(tree)


def test_no_app_module_imports_a_concrete_environment():
    bad = []
    for path in _app_files():
        for name in _imported(ast.parse(path.read_text(), str(path))):
            if any(name == c or name.startswith(c + ".") for c in CONCRETE):
                bad.append(f"{path.relative_to(REPO)}: {name}")
    assert not bad, bad


def test_app_libraries_import_no_environment_at_import_time():
    code = ("import sys, kalm.ui.plots, kalm.ui.compare, kalm.ui.train, kalm.ui.episodes, "
            "kalm.ui.preload; print([m for m in sys.modules if m.startswith(%r)])"
            % (CONCRETE,))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         check=True).stdout
    assert out.strip() == "[]", out


def test_kalm_ui_plots_serves_the_clevr_names_through_the_registry():
    import kalm.ui.plots as plots

    views = get_env("clevr").views()
    assert views is not None and views.__name__ == "kalm.envs.clevr.plots"
    for name in ("BALL_HEX", "DIRECTION_NAMES", "action_label", "positions_figure",
                 "actions_figure", "topview_figure", "topview_image", "step_errors_figure"):
        assert getattr(plots, name) is getattr(views, name)
    assert get_env("metaworld").views() is None
    with pytest.raises(AttributeError):
        plots.no_such_figure  # noqa: B018


def test_action_labels():
    clevr, mw = get_env("clevr"), get_env("metaworld")
    assert clevr.action_label(0) == "push red right"
    assert clevr.action_label(np.int64(13)) == "push blue left-behind"
    # CLEVR's own labels are the action names, which the interface's default would give too
    assert [clevr.action_label(a) for a in range(40)] == list(clevr.action.names)
    assert [Environment.action_label(clevr, a) for a in range(40)] == list(clevr.action.names)
    assert mw.action_label(np.array([0.1, -0.2, 0.0, 1.0])) == \
        "dx +0.10, dy -0.20, dz +0.00, grip +1.00"


def _metaworld_states(T: int = 4) -> np.ndarray:
    mw = get_env("metaworld")
    rng = np.random.default_rng(0)
    o = np.zeros((T + 1, mw.state.dim))
    for g in ("gripper", "target", "puck"):
        sl = mw.state.group(g)
        o[:, sl] = rng.uniform(-0.3, 0.3, (T + 1, sl.stop - sl.start))
    return o


def test_metaworld_gets_default_figures_from_its_state_and_action_names():
    mw = get_env("metaworld")
    o = _metaworld_states()
    acts = np.random.default_rng(1).uniform(-1, 1, (4, 4))
    figs = mw.episode_figures(o, acts, step=2)
    assert list(figs) == ["positions", "actions"]
    pos = figs["positions"]
    assert pos.layout.title.text == "Positions of the gripper, target and objects"
    shown = {t.name for t in pos.data if t.showlegend}
    assert shown == {"gripper", "target", "puck"}  # the absent entities are left out
    assert any(s.x0 == 2 for s in pos.layout.shapes)  # the step marker
    assert {t.name for t in figs["actions"].data} == {"dx", "dy", "dz", "grip"}
    # no actions: no actions figure; a compare trajectory: dotted traces beside the solid ones
    assert list(mw.episode_figures(o)) == ["positions"]
    both = mw.episode_figures(o, compare=o + 0.01)["positions"]
    assert {t.line.dash for t in both.data} == {"solid", "dot"}
    assert len(both.data) == 2 * len(pos.data)


def test_clevr_figures_are_its_own_views():
    clevr = get_env("clevr")
    o = np.random.default_rng(0).uniform(-0.3, 0.3, (3, 10))
    figs = clevr.episode_figures(o, [0, 13], step=1, compare=o + 0.01)
    assert list(figs) == ["top", "positions", "actions"]
    assert figs["positions"].layout.title.text == "Ball positions"
    assert sum(s.type == "circle" for s in figs["top"].layout.shapes) == 5
    assert list(figs["actions"].data[0].y) == ["red", "blue"]
    assert set(clevr.figure_notes) == {"top", "actions"}
    assert "top" not in get_env("metaworld").episode_figures(_metaworld_states())


def test_topview_images_of_both_environments():
    for env, o in ((get_env("clevr"), np.random.default_rng(0).uniform(-0.3, 0.3, (4, 10))),
                   (get_env("metaworld"), _metaworld_states())):
        img = env.topview_image(o, size=200)
        assert img.ndim == 3 and img.shape[1] == 200 and img.shape[2] == 3, env.name
        assert img.dtype == np.uint8 and (img < 255).any(), env.name  # something was drawn
    # non-finite states (imagined) are gaps, not errors
    o = _metaworld_states()
    o[2, :3] = np.nan
    assert get_env("metaworld").topview_image(o).ndim == 3


def test_step_error_figures_name_each_entity():
    clevr, mw = get_env("clevr"), get_env("metaworld")
    fig = clevr.step_errors_figure(np.full((3, 5), 0.01), 0.05, step=1)
    views = clevr.views()
    assert [t.name for t in fig.data] == ["red", "blue", "green", "purple", "cyan"]
    assert [t.marker.color for t in fig.data] == list(views.BALL_HEX)
    assert fig.layout.title.text == "Per-ball error"
    groups = [g for g, _, _ in mw.state.groups]
    fig = mw.step_errors_figure(np.zeros((2, len(groups))), 0.1)
    assert [t.name for t in fig.data] == groups


class _Stub(Environment):
    """An environment with nothing but what the app-view defaults need."""

    name, title, horizon = "stub", "Stub", 5

    def __init__(self) -> None:
        from kalm.envs.base import ActionSpec, StateLayout

        self.state = StateLayout(names=("a x", "a y"), groups=(("a", 0, 2),))
        self.action = ActionSpec(kind="discrete", size=2, names=("left", "right"))

    def episode_frames(self, observations, actions=None, *, width=320, height=240):
        return [np.full((2, 2, 3), i, np.uint8) for i in range(len(observations))]

    make = suite_items = parse_goal = goal_from_dict = item_from_dict = describe = None
    sample_goal = reward_labels = expert = None


_Stub.__abstractmethods__ = frozenset()


def test_defaults_for_a_new_environment():
    env = _Stub()
    o = np.array([[0.0, 0.0], [0.1, 0.0], [0.2, 0.1]])
    frames = env.animated_frames(o, [1, 1], substep_frames=3)
    assert len(frames) == 2 * 3 + 1 and [int(f[0, 0, 0]) for f in frames[::3]] == [0, 1, 2]
    figs = env.episode_figures(o, [1, 0], step=1)
    assert list(figs) == ["positions", "actions"]
    assert list(figs["actions"].data[0].y) == ["right", "left"]
    assert env.action_label(1) == "right"
    assert env.views() is None and env.figure_notes == {}
    assert env.topview_image(o, size=64).shape[1] == 64
    json.dumps(figs["positions"].to_plotly_json(), default=str)  # a plain, serialisable figure
