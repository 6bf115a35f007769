"""Display metadata of the CustomVoice preset speakers (presets.json).

The speaker LIST always comes from the loaded checkpoint (`TTSEngine.info.speakers`); this
file only adds names, genders and descriptions for display (e.g. `GET /api/voices`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class Preset:
    id: str  # lower-case speaker id as in the checkpoint's spk_id ("uncle_fu")
    name: str  # display name ("Uncle_Fu")
    gender: str  # "female" | "male"
    native_language: str  # model language name ("chinese", "english", ...)
    description: str
    dialect: str | None = None  # e.g. "sichuan_dialect" (spoken for chinese/auto)


@cache
def load_presets() -> dict[str, Preset]:
    """Preset id -> Preset, in file order (read once, cached: do not mutate)."""
    raw = json.loads(resources.files(__package__).joinpath("presets.json").read_text("utf-8"))
    return {key.lower(): Preset(id=key.lower(), **fields) for key, fields in raw.items()}
