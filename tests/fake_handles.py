"""Stand-ins for Ray DeploymentHandles over plain objects, for tests that run the service
without Ray: `handle.method.remote(...)` calls the object's method and returns what it
returns (a coroutine for an async method, as the service awaits)."""

from __future__ import annotations


class Remote:
    """One handle method: `.remote(...)` calls `fn`."""

    def __init__(self, fn):
        self._fn = fn

    def remote(self, *args, **kwargs):
        return self._fn(*args, **kwargs)


class FakeHandle:
    """A DeploymentHandle's shape over a plain object's methods."""

    def __init__(self, target):
        self._target = target

    def options(self, **_):
        return self

    def __getattr__(self, name):
        return Remote(getattr(self._target, name))


class FakeModel:
    """A model deployment that answers every request with `audio`: whole (`frames` frames) or
    streamed in `chunks` equal chunks of `stream_frames // chunks` frames each (default
    `frames`)."""

    def __init__(self, info, audio, sample_rate: int, *, frames: int,
                 stream_frames: int | None = None, chunks: int = 5):
        self._info, self._audio, self._rate = info, audio, sample_rate
        self._frames, self._chunks = frames, chunks
        self._stream_frames = frames if stream_frames is None else stream_frames

    async def info(self):
        return self._info

    async def synthesize(self, request):
        from deployments.engine.types import SynthesisResult

        return SynthesisResult(audio=self._audio, sample_rate=self._rate, frames=self._frames)

    def stream(self, request):
        from deployments.engine.types import AudioChunk

        total, k = self._stream_frames, self._chunks
        n, per = len(self._audio) // k, total // k
        return _Chunks([AudioChunk(audio=self._audio[i * n:(i + 1) * n], sample_rate=self._rate,
                                   index=i, frames=per, final=i == k - 1, total_frames=total,
                                   input_tokens=3) for i in range(k)])


class _Chunks:
    def __init__(self, chunks):
        self._chunks = chunks

    async def __anext__(self):
        if self._chunks:
            return self._chunks.pop(0)
        raise StopAsyncIteration

    def cancel(self):
        pass
