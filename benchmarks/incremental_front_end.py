"""Benchmark: the text front end of incremental speech sessions (serve_app.text.incremental),
fed word by word as an LLM sends text, with and without normalization and a dictionary.

    python benchmarks/incremental_front_end.py

Per configuration: the front end's time per arriving word (mean and worst, grammars built and
warm, normalization cache cold), and how far behind the text the model's text is after each
word: held-back characters and words (mean and worst). At 20 words/s, each held-back word is
50 ms more before the model can read it.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serve_app.text.incremental import IncrementalFrontEnd  # noqa: E402
from serve_app.text.lexicon import Lexicon, Rule  # noqa: E402
from serve_app.text.normalize import TextNormalizer  # noqa: E402

logging.disable(logging.INFO)

TEXT = ("Sure, I can help with that. Your order of 3 items costs $1,299.99 and ships on "
        "2026-12-04 at 13:45, about 12 km from the Main St. store. Qwen will call you at "
        "5 pm; if it is late, dial 911 only in an emergency, and ask for Dr. Smith. "
        "Most of this reply is ordinary words, as a voice agent's replies are.")


async def run(normalizer: TextNormalizer | None, lexicon: Lexicon | None) -> dict:
    front = IncrementalFrontEnd(
        (lambda s: normalizer.normalize_async(s, "english")) if normalizer else None, lexicon)
    pieces = re.findall(r"\s*\S+", TEXT)
    took, held_chars, held_words = [], [], []
    sent = ""
    for piece in pieces:
        started = time.perf_counter()
        await front.feed(piece)
        took.append(time.perf_counter() - started)
        sent += piece
        held = sent[len(sent) - front.held:]
        held_chars.append(front.held)
        held_words.append(len(held.split()))
    await front.finish()
    return {"per word ms": (statistics.mean(took) * 1e3, max(took) * 1e3),
            "held chars": (statistics.mean(held_chars), max(held_chars)),
            "held words": (statistics.mean(held_words), max(held_words))}


def main() -> None:
    lexicon = Lexicon([[Rule("Qwen", "chwen"), Rule("Main St", "Main Street")]])
    normalizer = TextNormalizer()
    normalizer.warm(("en",))
    print(f"{platform.processor() or platform.machine()}, python {platform.python_version()}; "
          f"{len(TEXT.split())} words fed one by one")
    print(f"{'configuration':32} {'per word ms (mean/max)':>24} {'held chars':>14} "
          f"{'held words':>14}")
    for name, norm, lex in (("no normalization, no dictionary", None, None),
                            ("normalization", normalizer, None),
                            ("normalization + dictionary", normalizer, lexicon)):
        if norm is not None:
            norm = TextNormalizer()  # cold cache: every unit through the grammar
            norm.warm(("en",))
        r = asyncio.run(run(norm, lex))
        print(f"{name:32} {r['per word ms'][0]:>15.2f} / {r['per word ms'][1]:<6.1f} "
              f"{r['held chars'][0]:>7.1f} / {r['held chars'][1]:<4} "
              f"{r['held words'][0]:>7.2f} / {r['held words'][1]:<4}")


if __name__ == "__main__":
    main()
