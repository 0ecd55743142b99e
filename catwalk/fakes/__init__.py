"""Local fake servers for the paid providers: a Gemini API and a fal.ai queue.

Small Starlette apps that answer exactly what the real services answer (see
``../shared/PROVIDERS.md``), produce real images and real MP4s, and misbehave on demand.
Tests start them on free ports; ``catwalk fakes`` runs both for a full local run.
"""

from catwalk.fakes._faults import Fault
from catwalk.fakes.fal import FakeFal
from catwalk.fakes.gemini import FakeGemini
from catwalk.fakes.server import RunningServer, serve_in_thread

__all__ = ["FakeFal", "FakeGemini", "Fault", "RunningServer", "serve_in_thread"]
