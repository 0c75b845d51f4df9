"""Logic behind the app's pages (Home, Data, Imagine, Validity, Train, Compare), kept out of the
page files.

Nothing here imports Streamlit (but ``kalm.ui.navigation``, inside its function): the pages gather
input and show what these functions return, so the same code is tested without a browser.

- ``kalm.ui.paths``: where datasets, grounded models and imagined sets are found, and the check
  that keeps typed paths inside the runs folder or ``assets/``;
- ``kalm.ui.plots``: the generic plotly figures (positions of a state layout's entities, action
  channels, per-entity errors, histograms of validity figures) behind the environment
  interface's app views (``Environment.episode_figures``, ...); CLEVR-Robot's own figures live in
  its folder and are served here under their historical names;
- ``kalm.ui.train`` / ``kalm.ui.compare``: the Train page's commands and job texts, the Compare
  page's policies, result cache, evaluations, tables and side-by-side videos;
- ``kalm.ui.episodes``: tables and filters over a dataset's episodes;
- ``kalm.ui.imagine``: one or a few imagined rollouts in memory, with their validity;
- ``kalm.ui.report``: reading an imagined set's run folder for the Validity page;
- ``kalm.ui.home``: the local runs by kind (datasets, grounded models, imagined sets, trained
  policies, jobs, run folders) and the one-click demo's goal, for the Home page;
- ``kalm.ui.navigation``: ``ensure_app_navigation()``, which every page calls first so that a
  directly opened page URL still runs inside ``app.py``'s navigation.
"""
