"""Benchmark: how well the consent check's speaker encoder (resemblyzer GE2E, on the
AudioProcessor) tells speakers apart, on real speech from distinct speakers: Debian's festival
voices (kal, ked: diphone voices, each recorded from a different man; slt: an HTS voice from a
woman) and espeak-ng's formant voices (scripts/install_speech.sh installs them). Run:

    python benchmarks/speaker_similarity.py [--threshold 0.80]

Each speaker reads the same four sentences (tests/speech.py); every clip is screened and
trimmed by silero-vad as a reference is, then embedded. Prints the same-speaker and
different-speaker cosine similarity (min / mean / max), the closest pair of different
speakers, and how a threshold splits them (false accepts: different speakers at or above it;
false refusals: the same speaker below it). The default threshold (clone.consent_threshold)
comes from this table (docs/platform.md, "Voice cloning safety").
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deployments.args import CloneArgs  # noqa: E402
from deployments.audio.analysis import (  # noqa: E402
    SpeakerEncoder,
    SpeechDetector,
    speaker_similarity,
)
from deployments.audio.reference import ReferenceLimits, prepare_reference  # noqa: E402
from tests.speech import SENTENCES, SPEAKERS, speak, speech_available  # noqa: E402


def _stats(values: list[float]) -> str:
    return f"min {min(values):.3f}  mean {np.mean(values):.3f}  max {max(values):.3f}  (n={len(values)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threshold", type=float, default=CloneArgs().consent_threshold)
    args = parser.parse_args()
    if not speech_available():
        print("festival/espeak-ng missing: run scripts/install_speech.sh")
        return 1
    detector, encoder = SpeechDetector(), SpeakerEncoder()
    limits = ReferenceLimits(min_speech_seconds=CloneArgs().min_speech_s)
    started = time.perf_counter()
    embeddings: dict[tuple[str, int], np.ndarray] = {}
    for speaker in SPEAKERS:
        for i, sentence in enumerate(SENTENCES):
            ref = prepare_reference(speak(speaker, sentence), limits=limits, speech=detector)
            embeddings[(speaker, i)] = encoder.embed(ref.samples, ref.sample_rate)
    seconds = time.perf_counter() - started
    same, different, pairs = [], [], {}
    for (a, ea), (b, eb) in itertools.combinations(embeddings.items(), 2):
        score = speaker_similarity(ea, eb)
        if a[0] == b[0]:
            same.append(score)
        else:
            different.append(score)
            key = tuple(sorted((a[0], b[0])))
            pairs[key] = max(pairs.get(key, -1.0), score)
    print(f"encoder: resemblyzer GE2E (256-d), {len(SPEAKERS)} speakers x {len(SENTENCES)} "
          f"sentences, {len(embeddings)} clips screened+embedded in {seconds:.1f} s on CPU")
    print(f"same speaker       {_stats(same)}")
    print(f"different speakers {_stats(different)}")
    print("closest different pairs (max over sentences):")
    for (a, b), score in sorted(pairs.items(), key=lambda kv: -kv[1])[:5]:
        print(f"  {a:10s} {b:10s} {score:.3f}")
    t = args.threshold
    false_accepts = sum(s >= t for s in different)
    false_refusals = sum(s < t for s in same)
    print(f"threshold {t:.2f}: false accepts {false_accepts}/{len(different)}, "
          f"false refusals {false_refusals}/{len(same)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
