"""Home page: what KALM does, and the runs found on this machine."""

import json
import os
from pathlib import Path

import streamlit as st

import kalm

# Run folders (collect, ground, imagine, train, evaluate) live here; KALM_RUNS_DIR overrides it.
RUNS_DIR = Path(os.environ.get("KALM_RUNS_DIR", Path(__file__).resolve().parent.parent / "runs"))

STEPS = [
    (
        "1 · Ground",
        "Fine-tune a small causal LM on real CLEVR-Robot rollouts so that it reads and writes "
        "states and actions as numbers, alongside the goal text.",
    ),
    (
        "2 · Imagine",
        "Ask the grounded LM for rollouts that reach novel goals (rephrased, unseen, or harder "
        "instructions) and keep the imaginary rollouts that pass validity checks.",
    ),
    (
        "3 · Learn",
        "Train a goal-conditioned policy with offline RL on the real and imaginary rollouts "
        "together, then evaluate it on goal suites in the simulator.",
    ),
]

DIAGRAM = """
digraph kalm {
  rankdir=LR;
  node [shape=box, style="rounded,filled", fillcolor="#f0f2f6", fontname="Helvetica"];
  edge [fontname="Helvetica", fontsize=10];
  real    [label="Real rollouts\\n(CLEVR-Robot)"];
  lm      [label="LM"];
  grounded[label="Grounded LM"];
  goals   [label="Novel goal texts"];
  imag    [label="Imaginary rollouts"];
  policy  [label="Goal-conditioned\\npolicy"];
  real -> grounded [label="ground"];
  lm -> grounded;
  goals -> imag;
  grounded -> imag [label="imagine"];
  real -> policy [label="offline RL"];
  imag -> policy [label="offline RL"];
}
"""


def read_status(run_dir: Path) -> dict | str | None:
    """The run's status.json as a dict, None when absent, or a message saying why it is unreadable."""
    path = run_dir / "status.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"status.json could not be read ({exc}); the run may still be writing it."


st.title("KALM")
st.caption(f"Knowledgeable Agents from Language Model rollouts · kalm {kalm.__version__}")
st.markdown(
    "KALM grounds a language model on robot rollouts, lets it **imagine** rollouts for goals it "
    "has never seen, and learns a policy from real and imagined experience with offline RL."
)

st.header("The method in three steps")
for column, (name, text) in zip(st.columns(len(STEPS)), STEPS):
    with column:
        st.subheader(name)
        st.markdown(text)
st.graphviz_chart(DIAGRAM)

st.header("Local runs")
run_dirs = sorted(
    (p for p in RUNS_DIR.iterdir() if p.is_dir()) if RUNS_DIR.is_dir() else [],
    key=lambda p: p.stat().st_mtime,
    reverse=True,
)
if not run_dirs:
    st.info(f"No runs yet. Runs appear here once created under `{RUNS_DIR}`.")
for run_dir in run_dirs:
    status = read_status(run_dir)
    state = status.get("state") or status.get("status") if isinstance(status, dict) else None
    with st.expander(f"{run_dir.name} · {state}" if isinstance(state, str) else run_dir.name):
        if status is None:
            st.caption("No status.json in this run folder.")
        elif isinstance(status, str):
            st.warning(status)
        else:
            st.json(status)
