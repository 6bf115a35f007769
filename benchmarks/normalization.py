"""Benchmark: text normalization backends on the case table (tests/text_cases.py), side by side.

    python benchmarks/normalization.py

For Chinese: WeTextProcessing's grammar as shipped, the same with this project's rules in front
(serve_app.text.normalize, what the service runs) and cn2an's `transform`; for English:
WeTextProcessing as shipped, with the rules, and num2words on the numbers a regex finds. Per
backend: the cases read right (pass rate), its build time, and the time per case (mean and
worst, grammar only, no cache). The failures of each backend are listed after the table.
"""

from __future__ import annotations

import logging
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serve_app.text import normalize  # noqa: E402
from tests.text_cases import EN_CASES, ZH_CASES, matches  # noqa: E402

logging.getLogger("wetext-zh_normalizer").setLevel(logging.WARNING)
logging.disable(logging.INFO)


def _wetext(language: str) -> Callable[[str], str]:
    if language == "zh":
        from tn.chinese.normalizer import Normalizer
        fst = Normalizer(remove_interjections=False, remove_erhua=False,
                         traditional_to_simple=False)
    else:
        from tn.english.normalizer import Normalizer
        fst = Normalizer()
    return fst.normalize


def _cn2an() -> Callable[[str], str]:
    import cn2an
    return lambda text: cn2an.transform(text, "an2cn")


def _num2words_en() -> Callable[[str], str]:
    return lambda text: normalize.num2words_numbers(text, "en")


BACKENDS: dict[str, list[tuple[str, Callable[[], Callable[[str], str]]]]] = {
    "zh": [("WeTextProcessing 1.2.0", lambda: _wetext("zh")),
           ("WeTextProcessing + rules (served)", lambda: normalize.grammar("zh")),
           ("cn2an.transform", _cn2an)],
    "en": [("WeTextProcessing 1.2.0", lambda: _wetext("en")),
           ("WeTextProcessing + rules (served)", lambda: normalize.grammar("en")),
           ("num2words on numbers", _num2words_en)],
}
CASES = {"zh": ZH_CASES, "en": EN_CASES}


def main() -> None:
    print(f"# normalization backends: {platform.processor() or platform.machine()}, "
          f"python {platform.python_version()}")
    print(f"{'lang':4} {'backend':36} {'pass':>9} {'build s':>8} {'mean ms':>8} {'max ms':>8}")
    failures: list[str] = []
    for language, backends in BACKENDS.items():
        cases = CASES[language]
        for name, build in backends:
            started = time.perf_counter()
            backend = build()
            built = time.perf_counter() - started
            passed, times = 0, []
            for category, written, spoken in cases:
                started = time.perf_counter()
                try:
                    out = backend(written)
                except Exception as exc:  # a backend that raises fails the case
                    out = f"<{type(exc).__name__}>"
                times.append(time.perf_counter() - started)
                if matches(out, spoken):
                    passed += 1
                else:
                    failures.append(f"{language} {name}: {category} {written!r} -> {out!r}")
            print(f"{language:4} {name:36} {passed:>4}/{len(cases):<4} {built:8.2f} "
                  f"{1000 * statistics.mean(times):8.1f} {1000 * max(times):8.1f}")
    print("\nfailures:")
    for line in failures:
        print("  " + line)


if __name__ == "__main__":
    main()
