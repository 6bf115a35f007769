"""Benchmark: what pronunciation dictionaries add to a request, side by side.

    python benchmarks/pronunciation.py

Per request the ingress reads the current versions of the request's dictionaries (one small
query; SQLite here, in a temporary directory), compiles a version's entries once per replica
(the first request after a change), and rewrites the text with them. Printed: the median and
worst of each step over repeated runs, for dictionaries of 10, 100 and 1000 entries applied
to a 500-character English text with a few matches.
"""

from __future__ import annotations

import platform as host
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serve_app.platform.config import PlatformArgs  # noqa: E402
from serve_app.platform.pronunciation import EntryData  # noqa: E402
from serve_app.platform.service import Platform  # noqa: E402
from serve_app.text.lexicon import Lexicon, Rule  # noqa: E402

TEXT = ("Qwen reads the SQL report to the team. The JSON export of the TTS service is ready, "
        "and the API answers in under a second. ") * 4
RUNS = 200


def timed(fn, runs: int = RUNS) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000, max(samples) * 1000


def main() -> None:
    with tempfile.TemporaryDirectory() as data:
        platform = Platform.open(PlatformArgs(data_dir=data))
        tenant = platform.tenants.create("bench").id
        print(f"pronunciation dictionaries, {host.processor() or 'cpu'}, Python "
              f"{host.python_version()}, SQLite, {len(TEXT)}-character text, {RUNS} runs")
        print(f"{'entries':>8}{'versions ms':>14}{'compile ms':>13}{'apply ms':>11}"
              f"{'apply worst':>13}")
        for size in (10, 100, 1000):
            entries = [EntryData(f"word{i}", f"alias {i}") for i in range(size - 4)] + [
                EntryData("Qwen", "chwen"), EntryData("SQL", "sequel", True),
                EntryData("JSON", "jason"), EntryData("TTS", "text to speech")]
            pdict = platform.dictionaries.create(tenant, f"d{size}", entries).id
            read, _ = timed(lambda pdict=pdict: platform.dictionaries.versions(tenant, [pdict]))
            rules = [Rule(e.grapheme, e.alias, e.case_sensitive, e.word_boundaries)
                     for e in entries]
            compiled, _ = timed(lambda rules=rules: Lexicon([rules]), runs=20)
            lexicon = Lexicon([rules])
            applied, worst = timed(lambda lexicon=lexicon: lexicon.apply(TEXT))
            print(f"{size:>8}{read:>14.3f}{compiled:>13.3f}{applied:>11.3f}{worst:>13.3f}")
        platform.close()


if __name__ == "__main__":
    main()
