"""kalm app: the Streamlit entry point. It declares the pages; each page lives in `pages/`.

Run it with `bash scripts/app.sh` (http://127.0.0.1:8501).
"""

import streamlit as st

st.set_page_config(page_title="KALM", page_icon=":robot_face:", layout="wide")

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
]

st.navigation(pages).run()
