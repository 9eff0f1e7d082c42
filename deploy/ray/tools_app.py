"""radpilot's imaging tools as a Ray Serve deployment (GPU-aware autoscaling).

    RADPILOT_STATE_DIR=/shared/radpilot serve run deploy.ray.tools_app:tools
    # then, for the API:  RADPILOT_TOOLS_URL=http://<ray-head>:8000/tools radpilot serve ...

Each replica loads the models once and serves `POST /run/{tool}` (radpilot.tools.remote).
Replicas and the API mount the same state volume. Knobs (environment): RADPILOT_TOOL_GPUS
(GPUs per replica, default 0; with 1, set RADPILOT_DEVICE=cuda), RADPILOT_TOOL_MAX_REPLICAS
(default 4), RADPILOT_TOOL_TARGET_ONGOING (requests per replica before scaling out, default 8).
"""

from __future__ import annotations

import os

from ray import serve

from radpilot.assembly import build_registry
from radpilot.settings import Settings
from radpilot.tools.base import ToolContext
from radpilot.tools.remote import create_tool_service

settings = Settings()
# The replica runs the tools itself (local): never forward to another tool service.
app = create_tool_service(build_registry(settings, local=True), ToolContext.create(settings))
# One GPU per replica when the tools run on CUDA, so that Ray places replicas on GPU nodes and
# counts them (a replica asking for none would still see, and crowd onto, GPU 0).
GPUS_PER_REPLICA = float(
    os.environ.get("RADPILOT_TOOL_GPUS", 1 if settings.device == "cuda" else 0)
)


@serve.deployment(
    ray_actor_options={"num_cpus": 1, "num_gpus": GPUS_PER_REPLICA},
    autoscaling_config={
        "min_replicas": 1,
        "max_replicas": int(os.environ.get("RADPILOT_TOOL_MAX_REPLICAS", 4)),
        "target_ongoing_requests": int(os.environ.get("RADPILOT_TOOL_TARGET_ONGOING", 8)),
    },
    max_ongoing_requests=32,
)
@serve.ingress(app)
class ImagingTools:
    """The FastAPI app above, replicated by Ray Serve."""


tools = ImagingTools.bind()
