"""The HTTP API (FastAPI): the original video-generation contract for the shop's systems.

Imports submission, db, clients.factory, config and domain; nothing imports ``api``
except the ``catwalk api`` command.
"""

from catwalk.api.app import PREFIX, create_app

__all__ = ["PREFIX", "create_app"]
