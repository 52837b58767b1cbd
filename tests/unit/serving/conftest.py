"""The serving unit tests run the model server's pure parts in process; BentoML is imported but
never tracks."""

from __future__ import annotations

import os

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
