"""kalm app: the Streamlit entry point. It declares the pages; each page lives in `pages/`.

Run it with `bash scripts/app.sh` (http://127.0.0.1:8501).

It starts the background preload (``kalm.ui.preload``): a no-op when the launcher already did.

Every page calls `kalm.ui.navigation.ensure_app_navigation()` first: because a `pages/` folder lies
beside this file, Streamlit would otherwise run a directly opened page URL (e.g. /data) on its own,
without this file, when that is the first request a fresh server gets (see that module).
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before anything imports mujoco (the preloaded renderer)
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

import streamlit as st  # noqa: E402

from kalm.ui import preload  # noqa: E402

# The shipped grounded model, the renderer and the goal embedder load in the background, once per
# server (scripts/serve.py starts them with the server; this covers `streamlit run app.py`).
preload.start()

st.set_page_config(page_title="KALM", page_icon=":robot_face:", layout="wide")

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/data.py", title="Data", icon=":material/dataset:"),
    st.Page("pages/imagine.py", title="Imagine", icon=":material/auto_awesome:"),
    st.Page("pages/validity.py", title="Validity", icon=":material/fact_check:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare:"),
]

st.navigation(pages).run()
