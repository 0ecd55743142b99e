"""Provider and storage clients behind one-verb protocols.

Must not import Prefect, tasks, flows, db or dashboards.
"""

from catwalk.clients.base import BlobStore, ImageGenerator, VideoGenerator

__all__ = ["BlobStore", "ImageGenerator", "VideoGenerator"]
