"""catwalk: a shop's product photos in, on-model product videos out.

One import package. ``catwalk.flows``, ``catwalk.tasks``, ``catwalk.db``,
``catwalk.dashboards`` and ``catwalk.deployments`` live in the checkout's top-level folders
of the same names (mapped in pyproject.toml); everything else lives in this folder.
"""
