"""Benchmark: what marking every output as AI-generated (deployments.audio.marking) costs.

    python benchmarks/output_marking.py [--seconds 10] [--repeat 50] [--requests 100]
                                        [--streams 200]

1. The mark itself, per format, on `--seconds` of audio: the time `embed_mark` takes (tags
   written around the encoded frames, never re-encoding) beside the time the encode took, and
   the bytes it adds; and the C2PA manifest's signing (deployments.audio.content_credentials,
   the development signer's ES256 key, as the AudioProcessor runs it) with the bytes it adds.
2. What signing adds to a request: non-streamed /v1/audio/speech answers through the same
   routes, SynthesisService and AudioProcessor class as the ingress (no Ray, so no handle hop:
   in a graph the sign call is one more AudioProcessor hop, ~1-2 ms on top), marking on with
   signing off and on (taking turns, who goes first alternating, so the load of a shared
   machine falls on both alike), p50 and fastest per format.
3. Streaming first audio with marking on and off: the same routes, SynthesisService and stream
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
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deployments.audio.codecs import encode  # noqa: E402
from deployments.audio.content_credentials import C2PA_FORMATS, ContentSigner  # noqa: E402
from deployments.audio.content_credentials.development import development_signer  # noqa: E402
from deployments.audio.formats import AudioFormat  # noqa: E402
from deployments.audio.marking import AIMark, embed_mark  # noqa: E402

FORMATS = ("wav", "mp3", "opus", "aac", "flac")
RATE = 24_000


def mark_costs(seconds: float, repeat: int, signer: ContentSigner) -> None:
    x = (0.2 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * RATE)) / RATE)).astype(np.float32)
    mark = AIMark("CustomVoice", "0123456789abcdef0123456789abcdef")
    print(f"mark and C2PA signing cost on {seconds:g} s of audio (median of {repeat}):")
    print(f"  {'format':6s} {'encode ms':>10s} {'mark ms':>8s} {'bytes added':>12s} "
          f"{'sign ms':>8s} {'bytes added':>12s}")
    for fmt in FORMATS:
        t0 = time.perf_counter()
        data = encode(x, RATE, fmt)
        encode_ms = (time.perf_counter() - t0) * 1000
        times, signing = [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            marked = embed_mark(data, fmt, mark)
            times.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            signed = signer.sign(marked, fmt, mark)
            signing.append((time.perf_counter() - t0) * 1000)
        sign = (f"{statistics.median(signing):8.2f} {len(signed) - len(marked):12d}"
                if AudioFormat(fmt) in C2PA_FORMATS else f"{'-':>8s} {'(mark only)':>12s}")
        print(f"  {fmt:6s} {encode_ms:10.1f} {statistics.median(times):8.3f} "
              f"{len(marked) - len(data):12d} {sign}")


def signed_requests(requests: int, credentials: dict) -> None:
    from tests.unit.test_output_marking import client  # the Ray-free ingress of the tests

    print(f"\nnon-streamed request time, marking on, {requests} requests each, unsigned and "
          "signed taking turns (ms; p50, and the fastest, which a busy machine disturbs least):")
    print(f"  {'format':6s} {'unsigned':>9s} {'signed':>9s} {'added':>7s} {'min unsigned':>13s} "
          f"{'min signed':>11s} {'added':>7s}")
    with client() as unsigned, client(content_credentials=credentials) as signed:
        _warmed_up()
        for fmt in ("wav", "mp3", "flac"):
            samples: dict[bool, list[float]] = {False: [], True: []}
            for i in range(requests + 5):
                turn = ((False, unsigned), (True, signed))
                for signs, http in turn if i % 2 else turn[::-1]:  # who goes first alternates
                    body = {"model": "tts-1", "voice": "ryan", "input": f"Hi {i}.",
                            "response_format": fmt}  # a new text each time: no cache hits
                    t0 = time.perf_counter()
                    r = http.post("/v1/audio/speech", json=body)
                    elapsed = (time.perf_counter() - t0) * 1000
                    assert r.status_code == 200
                    if i >= 5:
                        samples[signs].append(elapsed)
            off, on = statistics.median(samples[False]), statistics.median(samples[True])
            low_off, low_on = min(samples[False]), min(samples[True])
            print(f"  {fmt:6s} {off:9.2f} {on:9.2f} {on - off:7.2f} {low_off:13.2f} "
                  f"{low_on:11.2f} {low_on - low_off:7.2f}")


def _warmed_up() -> None:
    """Wait for the AudioProcessors' background warm-up (librosa, numba, silero-vad) to end,
    so that it competes with no measured request."""
    for thread in threading.enumerate():
        if thread.name == "audio-warm-up":
            thread.join()


def first_audio(streams: int, credentials: dict) -> None:
    from tests.unit.test_output_marking import client  # the Ray-free ingress of the tests

    print(f"\ningress time to first audio byte, {streams} streams each, the modes taking "
          "turns (ms):")
    print(f"  {'marking':8s} {'format':6s} {'p50':>7s} {'p95':>7s}")
    modes = (("off", {"mark_outputs": False}), ("on", {}),
             ("on+c2pa", {"content_credentials": credentials}))
    clients = {label: client(**audio) for label, audio in modes}
    for http in clients.values():
        http.__enter__()
    _warmed_up()
    try:
        for fmt in ("pcm", "mp3"):
            samples: dict[str, list[float]] = {label: [] for label in clients}
            for i in range(streams + 5):
                turn = list(clients.items())
                for label, http in turn[i % 3:] + turn[:i % 3]:  # who goes first rotates
                    body = {"model": "tts-1", "voice": "ryan", "input": "Hi.",
                            "response_format": fmt, "stream_format": "audio"}
                    t0 = time.perf_counter()
                    with http.stream("POST", "/v1/audio/speech", json=body) as r:
                        assert ("X-AI-Generated" in r.headers) == (label != "off")
                        chunks = r.iter_bytes()
                        next(chunks)
                        elapsed = (time.perf_counter() - t0) * 1000
                        for _ in chunks:
                            pass
                    if i >= 5:  # warm-up
                        samples[label].append(elapsed)
            for label, values in samples.items():
                values.sort()
                print(f"  {label:8s} {fmt:6s} {statistics.median(values):7.2f} "
                      f"{values[int(0.95 * (len(values) - 1))]:7.2f}")
    finally:
        for http in clients.values():
            http.__exit__(None, None, None)


def main() -> int:
    import logging

    logging.disable(logging.INFO)  # the ingress logs a line per stream
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    dev = development_signer(tempfile.mkdtemp(prefix="qtts-c2pa-bench-"))
    signer = ContentSigner.from_files(dev.cert_chain, dev.private_key)
    credentials = {"cert_chain": str(dev.cert_chain), "private_key": str(dev.private_key)}
    mark_costs(args.seconds, args.repeat, signer)
    signed_requests(args.requests, credentials)
    first_audio(args.streams, credentials)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
