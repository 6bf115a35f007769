"""One request to a model deployment, built once from an operation's input.

`SynthesisService.prepare` turns every typed input into a `ModelCall`: the deployment, its
model's info, the engine's `SynthesisRequest`, the cache key's extra parts and the saved
voice it bills; a clone carries its upload (prepared by the AudioProcessor when the call is
made), and a request whose text is still arriving (an incremental speech session) carries
the `TextSource` the model reads it from. `ModelCall.invoke` is the one place that picks the
model's method: `synthesize` / `stream`, their `_with_reference` forms for an upload, or
`stream_text` for arriving text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ray.serve.handle import DeploymentHandle

from deployments.engine.types import ModelInfo, SynthesisRequest
from serve_app.protocol.speech import VoiceCloneInput

if TYPE_CHECKING:
    from deployments.text_relay import TextSource


@dataclass(frozen=True)
class ModelCall:
    deployment: str
    info: ModelInfo
    request: SynthesisRequest
    cache_extra: dict = field(default_factory=dict)
    voice: str | None = None  # the saved voice's id, for usage
    clone: VoiceCloneInput | None = None
    ref_text: str | None = None
    text: TextSource | None = None  # text still arriving: the model reads it from here

    @property
    def characters(self) -> int:
        """The request's text, as billed (text still arriving is counted when it ends)."""
        return len(self.request.text)

    async def invoke(self, handle: DeploymentHandle, audio: DeploymentHandle, *,
                     stream: bool) -> Any:
        """Make the call on the model's `handle`: a response (`stream=False`, await it for
        the SynthesisResult) or a response generator of AudioChunk (`stream=True`)."""
        if stream:
            handle = handle.options(stream=True)
        if self.text is not None:
            return handle.stream_text.remote(self.request, self.text)
        if self.clone is not None:
            reference = await audio.prepare_reference.remote(self.clone.reference_audio)
            method = handle.stream_with_reference if stream else handle.synthesize_with_reference
            return method.remote(self.request, reference, self.ref_text, self.clone.x_vector_only)
        return (handle.stream if stream else handle.synthesize).remote(self.request)
