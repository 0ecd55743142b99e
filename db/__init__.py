"""Persistence: typed ORM models, sessions and query functions.

Must not import clients, tasks, flows or dashboards.
"""

from catwalk.db.session import (
    dispose_engines,
    get_engine,
    migrate,
    retry_db,
    session_scope,
    unreachable,
)

__all__ = [
    "dispose_engines",
    "get_engine",
    "migrate",
    "retry_db",
    "session_scope",
    "unreachable",
]
