"""Benchmark: what marking every output as AI-generated (deployments.audio.marking) costs.

    python benchmarks/output_marking.py [--seconds 10] [--repeat 50] [--streams 200]

1. The mark itself, per format, on `--seconds` of audio: the time `embed_mark` takes (tags
   written around the encoded frames, never re-encoding) beside the time the encode took, and
   the bytes it adds.
2. Streaming first audio with marking on and off: the same routes, SynthesisService and stream
   encoder as the ingress (no Ray), in front of a model that answers at once, so what is
   measured is the ingress's own time to the first audio byte of a chunked pcm and an mp3
   stream (the model's time comes on top, the same either way). A stream's mark is its X-AI-*
   headers, sent with the status line before any audio. (Starlette's TestClient hands the
   response over when the app has sent it, so with a model that answers at once this is the
   ingress's whole handling of a short stream: an upper bound of its first-audio time.)
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deployments.audio.codecs import encode  # noqa: E402
from deployments.audio.marking import AIMark, embed_mark  # noqa: E402

FORMATS = ("wav", "mp3", "opus", "aac", "flac")
RATE = 24_000


def mark_costs(seconds: float, repeat: int) -> None:
    x = (0.2 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * RATE)) / RATE)).astype(np.float32)
    mark = AIMark("CustomVoice", "0123456789abcdef0123456789abcdef")
    print(f"mark cost on {seconds:g} s of audio (median of {repeat}):")
    print(f"  {'format':6s} {'encode ms':>10s} {'mark ms':>8s} {'bytes added':>12s}")
    for fmt in FORMATS:
        t0 = time.perf_counter()
        data = encode(x, RATE, fmt)
        encode_ms = (time.perf_counter() - t0) * 1000
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            marked = embed_mark(data, fmt, mark)
            times.append((time.perf_counter() - t0) * 1000)
        print(f"  {fmt:6s} {encode_ms:10.1f} {statistics.median(times):8.3f} "
              f"{len(marked) - len(data):12d}")


def first_audio(streams: int) -> None:
    from tests.unit.test_output_marking import client  # the Ray-free ingress of the tests

    print(f"\ningress time to first audio byte, {streams} streams each (ms):")
    print(f"  {'marking':8s} {'format':6s} {'p50':>7s} {'p95':>7s}")
    for fmt in ("pcm", "mp3"):
        for on in (False, True):
            with client(mark_outputs=on) as http:
                samples = []
                for i in range(streams + 5):
                    body = {"model": "tts-1", "voice": "ryan", "input": "Hi.",
                            "response_format": fmt, "stream_format": "audio"}
                    t0 = time.perf_counter()
                    with http.stream("POST", "/v1/audio/speech", json=body) as r:
                        assert ("X-AI-Generated" in r.headers) == on
                        chunks = r.iter_bytes()
                        next(chunks)
                        elapsed = (time.perf_counter() - t0) * 1000
                        for _ in chunks:
                            pass
                    if i >= 5:  # warm-up
                        samples.append(elapsed)
            samples.sort()
            print(f"  {'on' if on else 'off':8s} {fmt:6s} {statistics.median(samples):7.2f} "
                  f"{samples[int(0.95 * (len(samples) - 1))]:7.2f}")


def main() -> int:
    import logging

    logging.disable(logging.INFO)  # the ingress logs a line per stream
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--streams", type=int, default=200)
    args = parser.parse_args()
    mark_costs(args.seconds, args.repeat)
    first_audio(args.streams)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
