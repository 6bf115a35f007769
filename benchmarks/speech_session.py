#!/usr/bin/env python
"""Speech-session benchmark: a simulated LLM sends a reply word by word at --rate tokens/s
into the WebSocket /v1/audio/speech/stream, in incremental mode (one engine slot reads the
text as it arrives) and in sentence mode, on the tiny CPU checkpoints.

    python benchmarks/speech_session.py [--rate 20] [--runs 3] [--frames 25]

Measured from the client: first text delta -> first audio byte, and close -> last audio
byte. Against the baseline a client without a session has: wait for the whole reply, then one
streamed POST /v1/audio/speech (chunked pcm) of all of it (first delta -> first audio byte =
the LLM's time + that request's first audio). Each sentence is seeded and held to --frames
codec frames (12.5 per second; the random checkpoint otherwise stops at random), the baseline
to the same total. The incremental session's one request reads one text token per frame, so
it is held to at least the reply's tokens + 4 frames (the tiny checkpoints' tokenizer cuts
this reply into ~136 tokens, about 3x what Qwen's real tokenizer makes of it): its audio is
longer, its latencies are what compare. Prints figures (medians over --runs); asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from tests.graph.test_speech_session import words as tokens  # noqa: E402 - an LLM's tokens

REPLY = ("Sure, I can help with that. The train leaves at nine in the morning from platform "
         "four. It takes about two hours to reach the coast. Would you like me to book a "
         "seat by the window?")


def session_run(base_url: str, key: str, rate: float, frames: int, seed: int,
                mode: str = "sentence") -> dict:
    url = base_url.replace("http://", "ws://") + "/v1/audio/speech/stream"
    first_audio = last_audio = None
    audio_bytes = 0
    with connect(url, additional_headers={"Authorization": f"Bearer {key}"},
                 max_size=None, open_timeout=60) as ws:
        ws.send(json.dumps({"type": "session", "voice": "vivian", "seed": seed, "mode": mode,
                            "response_format": "pcm", "min_frames": frames,
                            "max_new_tokens": frames + 1}))  # exactly `frames` frames
        assert json.loads(ws.recv(timeout=60))["type"] == "session.created"
        sent: dict[str, float] = {}

        def llm() -> None:
            sent["first"] = time.perf_counter()
            for token in tokens(REPLY):
                ws.send(json.dumps({"type": "text", "text": token}))
                time.sleep(1 / rate)
            sent["close"] = time.perf_counter()
            ws.send(json.dumps({"type": "close"}))

        sender = threading.Thread(target=llm)
        sender.start()
        while True:
            message = ws.recv(timeout=120)
            if isinstance(message, bytes):
                last_audio = time.perf_counter()
                first_audio = first_audio or last_audio
                audio_bytes += len(message)
            elif (event := json.loads(message))["type"] == "error":
                raise RuntimeError(f"session error: {event}")
            elif event["type"] == "done":
                break
        sender.join()
    return {"first_audio": first_audio - sent["first"], "close_to_last": last_audio - sent["close"],
            "llm": sent["close"] - sent["first"], "audio_s": audio_bytes / 2 / 24000}


def whole_reply_run(base_url: str, key: str, rate: float, frames: int, seed: int) -> dict:
    """Wait for the whole reply (as the LLM would take), then stream it in one request."""
    llm = len(tokens(REPLY)) / rate
    body = {"model": "tts-1", "input": REPLY, "voice": "vivian", "seed": seed,
            "response_format": "pcm", "stream_format": "audio", "min_frames": frames,
            "max_new_tokens": frames + 1}
    with httpx.Client(base_url=base_url, timeout=120,
                      headers={"Authorization": f"Bearer {key}"}) as client:
        started = time.perf_counter()
        first = last = None
        size = 0
        with client.stream("POST", "/v1/audio/speech", json=body) as r:
            for piece in r.iter_raw():
                if piece:
                    last = time.perf_counter()
                    first = first or last
                    size += len(piece)
    return {"first_audio": llm + (first - started), "close_to_last": last - started,
            "llm": llm, "audio_s": size / 2 / 24000}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=20.0, help="LLM tokens (words) per second")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--frames", type=int, default=25, help="codec frames per sentence")
    args = ap.parse_args()
    from benchmarks.cpu_graph import cpu_graph
    from deployments.engine.tiny import default_tiny_models_dir
    from serve_app.sessions.sentence_speaker import SentenceSplitter

    root = default_tiny_models_dir()
    with cpu_graph() as (base_url, key):
        splitter = SentenceSplitter()
        sentences = len(splitter.feed(REPLY) + splitter.flush())
        from transformers import AutoTokenizer

        reply_tokens = len(AutoTokenizer.from_pretrained(root / "custom_voice")(REPLY)["input_ids"])
        incremental_frames = max(args.frames * sentences, reply_tokens + 4)
        session_run(base_url, key, 200, 4, 0)  # warm the path
        session_run(base_url, key, 200, 4, 0, "incremental")
        whole_reply_run(base_url, key, 200, 4, 0)
        rows = {"session (incremental mode)": [], "session (sentence mode)": [],
                "whole reply, then one stream": []}
        for run in range(args.runs):
            rows["session (incremental mode)"].append(
                session_run(base_url, key, args.rate, incremental_frames, run, "incremental"))
            rows["session (sentence mode)"].append(
                session_run(base_url, key, args.rate, args.frames, run))
            rows["whole reply, then one stream"].append(
                whole_reply_run(base_url, key, args.rate, args.frames * sentences, run))
        print(f"tiny CPU checkpoints, {os.cpu_count()} cores; reply of {len(tokens(REPLY))} "
              f"words, {sentences} sentences, at {args.rate:g} tokens/s "
              f"({len(tokens(REPLY)) / args.rate:.1f} s); {args.frames} frames per sentence, "
              f"{incremental_frames} for the incremental request ({reply_tokens} text tokens); "
              f"medians of {args.runs} runs\n")
        print("| path | first delta -> first audio ms | close -> last byte ms | audio s |")
        print("|---|---|---|---|")
        for name, runs in rows.items():
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(f"| {name} | {med['first_audio'] * 1000:.0f} | "
                  f"{med['close_to_last'] * 1000:.0f} | {med['audio_s']:.2f} |")


if __name__ == "__main__":
    main()
