"""A module-level Application for `serve build serve_app.app.published:app` and `serve run`.

Serves the published 1.7B checkpoints unless environment variables say otherwise
(CUSTOM_VOICE_MODEL_ID, DEVICE, ...); configs with `args:` use `serve_app.app.builder:build_app`.
"""

from serve_app.app.args import PUBLISHED_CHECKPOINTS, AppArgs
from serve_app.app.builder import build_app
from serve_app.app.settings import apply_environment

_data = apply_environment(AppArgs()).model_dump(exclude_unset=True, mode="json")
for _section, _model in PUBLISHED_CHECKPOINTS.items():
    _data.setdefault(_section, {"engine": {"model": _model}})

app = build_app(AppArgs.model_validate(_data))
