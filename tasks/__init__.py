"""Prefect tasks: thin, idempotent steps that call one client and record the result.

May import clients, db, config, domain; never flows or dashboards.
"""

from catwalk.tasks.images import generate_keyframes
from catwalk.tasks.jobs import fail_job, start_job
from catwalk.tasks.publish import delete_pending, publish_video
from catwalk.tasks.quality import check_keyframes
from catwalk.tasks.video import animate_keyframes

__all__ = [
    "animate_keyframes",
    "check_keyframes",
    "delete_pending",
    "fail_job",
    "generate_keyframes",
    "publish_video",
    "start_job",
]
