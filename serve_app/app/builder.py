"""The one place the graph is assembled: typed AppArgs -> a Ray Serve Application.

    Ingress ─┬─ CustomVoice ─┐
             ├─ VoiceDesign  ├─ ModelServer bound once per model kind, own checkpoint
             ├─ VoiceClone  ─┘
             ├─ AudioProcessor (CPU)
             └─ ForcedAligner (word timestamps; GPU, or CPU with the tiny checkpoint)

`serve deploy` configs point `import_path` at `serve_app.app.builder:build_app` and pass `args:`;
`serve build` needs an Application object, so `serve_app.app.published:app` is one built from the
environment. Deployment options (resources, autoscaling, queues) come from the config's
`deployments:` list, or from `overrides` when the graph is run from Python.
"""

from collections.abc import Mapping
from typing import Any

from ray.serve import Application

from deployments.aligner_server import AlignerServer
from deployments.audio_processor import AudioProcessor
from deployments.model_server import ModelServer
from serve_app.app.args import ALIGNER, AUDIO_PROCESSOR, INGRESS, AppArgs
from serve_app.app.ingress import TTSIngress
from serve_app.app.settings import apply_environment


def build_app(args: AppArgs) -> Application:
    """The builder `serve deploy` calls (Ray allows it exactly one parameter, and validates
    the config's `args:` into the annotated model; a plain dict is accepted too)."""
    if not isinstance(args, AppArgs):
        args = AppArgs.model_validate(args)
    return build_graph(args)


def build_graph(
    args: AppArgs, overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> Application:
    """Build the graph. `overrides`: deployment name -> `.options()` kwargs (Ray's
    deployment schema keys, as in a serve config's `deployments:` list)."""
    args = apply_environment(args)
    overrides = overrides or {}

    def options(deployment, name: str):
        return deployment.options(name=name, **dict(overrides.get(name, {})))

    models = {
        name: options(ModelServer, name).bind(server_args)
        for name, server_args in args.model_servers().items()
    }
    audio = options(AudioProcessor, AUDIO_PROCESSOR).bind(args.audio, args.clone)
    aligner = options(AlignerServer, ALIGNER).bind(args.aligner) if args.aligner else None
    return options(TTSIngress, INGRESS).bind(args, models, audio, aligner)
