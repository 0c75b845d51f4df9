"""Keep every page inside ``app.py``'s navigation, also when a page URL is opened directly.

Why this is needed (Streamlit 1.67, ``streamlit/runtime/pages_manager.py`` and
``streamlit/runtime/scriptrunner/script_runner.py``): the first session of a server process sets
the process-wide flag ``PagesManager.uses_pages_directory`` to whether a ``pages/`` folder lies
beside the main script. While that flag is true, every run goes through ``_mpa_v1``: the old
"multipage apps v1" mode, which lists ``pages/*.py`` itself (titles from the file names: "data",
"home", ...) and runs the page of the URL on its own. Only a call to ``st.navigation`` clears the
flag. So when the first browser tab a fresh server sees opens ``/data`` (a bookmark, a shared
link), Streamlit runs ``pages/data.py`` alone, without ``app.py``: no ``set_page_config`` (no wide
layout), lower-case sidebar entries, and the flag stays set until someone opens ``/``.

No configuration option turns that mode off (``client.showSidebarNavigation`` only hides the
sidebar), and ``app.py`` cannot help because it is not run at all. Hence every page calls
``ensure_app_navigation()`` first: in that mode it clears the flag and asks for a rerun, which
runs ``app.py``; its ``st.navigation`` then resolves the same URL (a page's hash comes from its URL
path, which is the file name in both modes) to the same page, inside the app. Otherwise (the
normal case, and page tests that run a page file on its own) it does nothing.

This is the one module of ``kalm.ui`` that imports Streamlit (inside the function).
"""

from __future__ import annotations

__all__ = ["ensure_app_navigation", "in_legacy_pages_mode"]


def in_legacy_pages_mode() -> bool:
    """Whether Streamlit is running ``pages/*.py`` as old-style pages, without ``app.py``."""
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # a Streamlit without that module has no such mode to escape
        return False
    return bool(getattr(PagesManager, "uses_pages_directory", False))


def ensure_app_navigation() -> None:
    """Rerun through ``app.py`` when Streamlit runs this page on its own (see the module doc).

    Call it at the top of every page, before anything is drawn. It returns normally when the page
    runs inside the app's navigation, and otherwise stops the run (``st.rerun``)."""
    if not in_legacy_pages_mode():
        return
    import streamlit as st
    from streamlit.runtime.pages_manager import PagesManager

    PagesManager.uses_pages_directory = False  # process-wide: later sessions go through app.py
    st.rerun()
