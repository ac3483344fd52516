"""A test-only pipeline: the real NSFW model, preceded by a pause, so a fault can land mid-task.

The fault workers import this module with ``celery worker --include``; it registers the pipeline
key ``slow`` in that process only. Production code is unchanged: a manifest naming ``slow`` is
unknown everywhere else.
"""

from __future__ import annotations

import os
import time

from ml.pipelines import REGISTRY
from ml.pipelines.nsfw import NsfwPipeline
from ml.types import MediaItem, Outcome

PIPELINE_KEY = "slow"
DELAY_ENV = "FAULT_SCREEN_SECONDS"
REGISTRY[PIPELINE_KEY] = f"{__name__}:SlowPipeline"


class SlowPipeline(NsfwPipeline):
    """Sleeps FAULT_SCREEN_SECONDS (default 0.5) before the real model call."""

    def predict(self, items: list[MediaItem]) -> list[Outcome]:
        time.sleep(float(os.environ.get(DELAY_ENV, "0.5")))
        return super().predict(items)
