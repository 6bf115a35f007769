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

import logging
from collections.abc import Mapping
from typing import Any

from ray.serve import Application

from deployments.aligner_server import AlignerServer
from deployments.audio.content_credentials.development import development_signer
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
    args = with_development_signer(apply_environment(args))
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


def with_development_signer(args: AppArgs) -> AppArgs:
    """`args` with the C2PA development signer's files filled in, when its audio section asks
    for one (`content_credentials.development_signer`, the CPU demo's profile) and names no
    certificate of its own: a test CA and leaf made once under the platform's data directory."""
    credentials = args.audio.content_credentials
    if not (credentials.development_signer and credentials.enabled
            and credentials.cert_chain is None):
        return args
    files = development_signer(args.platform.resolved_data_dir() / "c2pa-development")
    logging.getLogger("qtts.app").warning(
        "C2PA: outputs are signed by a DEVELOPMENT certificate (%s); configure "
        "audio.content_credentials.cert_chain/private_key in production", files.cert_chain)
    credentials = credentials.model_copy(update={
        "cert_chain": str(files.cert_chain), "private_key": str(files.private_key),
        "trust_anchors": credentials.trust_anchors or str(files.ca)})
    return args.model_copy(update={"audio": args.audio.model_copy(
        update={"content_credentials": credentials})})
