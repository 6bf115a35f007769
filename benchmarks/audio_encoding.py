"""Benchmark: in-process audio encode/decode (deployments.audio.codecs) vs an ffmpeg subprocess.

The subprocess path is pydub (AudioSegment.export / from_file spawn `ffmpeg` per call). Run:

    python benchmarks/audio_encoding.py [--seconds 5] [--repeat 10]

Prints one table (format, in-process ms, pydub ms, x-realtime of each, ratio) and the decode
of an uploaded 10 s mp3. Without ffmpeg on PATH only the in-process figures are printed.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deployments.audio.codecs import decode, encode  # noqa: E402
from deployments.audio.formats import AudioFormat  # noqa: E402
from deployments.audio.reference import prepare_reference  # noqa: E402
from deployments.audio.render import RenderOptions, render  # noqa: E402

SR = 24000
FORMATS = (AudioFormat.MP3, AudioFormat.OPUS, AudioFormat.AAC, AudioFormat.FLAC, AudioFormat.WAV)
#: pydub export arguments giving the same codec, container and bitrate as codecs.encode.
PYDUB_EXPORT: dict[AudioFormat, dict[str, str]] = {
    AudioFormat.MP3: {"format": "mp3", "codec": "libmp3lame", "bitrate": "128k"},
    AudioFormat.OPUS: {"format": "ogg", "codec": "libopus", "bitrate": "64k"},
    AudioFormat.AAC: {"format": "adts", "codec": "aac", "bitrate": "128k"},
    AudioFormat.FLAC: {"format": "flac"},
    AudioFormat.WAV: {"format": "wav"},  # pydub writes wav itself (no ffmpeg)
}


def speech_like(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """Deterministic speech-like test signal: gliding harmonics, 4 Hz syllables, breath noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 140.0 + 30.0 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 4.0 * t), 0.0, None) ** 0.5
    x = 0.25 * voice * envelope + 0.01 * rng.standard_normal(t.size)
    return (0.8 * x / np.max(np.abs(x))).astype(np.float32)


def best_ms(fn: Callable[[], object], repeat: int) -> float:
    """Fastest of `repeat` timed calls (after one warm-up), in ms: the least disturbed by other
    load on the machine, as timeit recommends."""
    fn()  # warm-up: imports, codec init, page cache
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times) * 1000.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="clip length (s)")
    parser.add_argument("--repeat", type=int, default=10, help="timed runs per cell (best is kept)")
    args = parser.parse_args(argv)

    ffmpeg = shutil.which("ffmpeg")
    print(f"python {platform.python_version()}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs, clip {args.seconds:g} s mono {SR} Hz, "
          f"best of {args.repeat}")
    if ffmpeg is None:
        print("ffmpeg not found on PATH: pydub (subprocess) column skipped, "
              "in-process figures only")
    else:
        from pydub import AudioSegment

        print(f"ffmpeg: {ffmpeg}")

    x = speech_like(args.seconds, SR)
    pcm = (np.clip(x, -1, 1) * 32767).round().astype("<i2").tobytes()

    print()
    print(f"{'format':<6} {'in-proc ms':>10} {'pydub ms':>9} {'in-proc xRT':>12} "
          f"{'pydub xRT':>10} {'ratio':>6}")
    for fmt in FORMATS:
        ours = best_ms(lambda fmt=fmt: encode(x, SR, fmt), args.repeat)
        ours_xrt = args.seconds / (ours / 1000.0)
        if ffmpeg is None:
            print(f"{fmt.value:<6} {ours:>10.2f} {'-':>9} {ours_xrt:>11.0f}x {'-':>10} {'-':>6}")
            continue
        segment = AudioSegment(data=pcm, sample_width=2, frame_rate=SR, channels=1)

        def pydub_encode(fmt: AudioFormat = fmt, segment: AudioSegment = segment) -> bytes:
            buf = io.BytesIO()
            segment.export(buf, **PYDUB_EXPORT[fmt])
            return buf.getvalue()

        theirs = best_ms(pydub_encode, args.repeat)
        theirs_xrt = args.seconds / (theirs / 1000.0)
        print(f"{fmt.value:<6} {ours:>10.2f} {theirs:>9.2f} {ours_xrt:>11.0f}x "
              f"{theirs_xrt:>9.0f}x {theirs / ours:>5.1f}x")

    if ffmpeg is not None:
        print("(wav: pydub packs WAV itself from int16, no ffmpeg; ours converts from float32)")

    upload_seconds = 10.0
    upload = encode(speech_like(upload_seconds, 44100, seed=1), 44100, "mp3", bitrate_kbps=128)
    print()
    print(f"decode of an uploaded {upload_seconds:g} s mp3 (44.1 kHz mono 128 kbps, "
          f"{len(upload) // 1024} KiB):")
    ours = best_ms(lambda: decode(upload), args.repeat)
    line = f"  in-process {ours:.2f} ms ({upload_seconds / (ours / 1000):.0f}x)"
    if ffmpeg is not None:
        theirs = best_ms(
            lambda: AudioSegment.from_file(io.BytesIO(upload), format="mp3").raw_data,
            args.repeat,
        )
        line += (f"; pydub {theirs:.2f} ms ({upload_seconds / (theirs / 1000):.0f}x); "
                 f"ratio {theirs / ours:.1f}x")
    print(line)

    print()
    print("whole pipelines, in-process (first call of speed/pitch not counted, see dsp.warm_up):")
    ours = best_ms(lambda: prepare_reference(upload), args.repeat)
    print(f"  prepare_reference(10 s mp3 upload): {ours:.2f} ms")
    cases = {
        "render mp3 (no DSP)": RenderOptions(format=AudioFormat.MP3),
        "render wav speed 1.25": RenderOptions(speed=1.25),
        "render wav pitch 1.2": RenderOptions(pitch=1.2),
        "render opus 48k, -16 LUFS": RenderOptions(format=AudioFormat.OPUS, sample_rate=48000,
                                                   loudness_lufs=-16.0),
    }
    for name, options in cases.items():
        ours = best_ms(lambda options=options: render(x, SR, options), args.repeat)
        print(f"  {name} ({args.seconds:g} s): {ours:.2f} ms "
              f"({args.seconds / (ours / 1000):.0f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
