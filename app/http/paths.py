"""Where a request's path names a model: /api/models/{name}/..., /v1/models/{name}[...] and
/v2/models/{name}[/versions/{version}]/... (admission counts per model; logs and metrics label
by model and version)."""

import re

MODEL_PATH = re.compile(r"^/(?:api|v1|v2)/models/(?P<model>[^/:]+)(?:/versions/(?P<version>\d+))?")
