"""Loading a Qwen3-TTS checkpoint: importing qwen-tts quietly and resolving the device,
dtype and attention implementation a config asks for."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import shutil
import sys
from types import ModuleType

import torch

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class _DropMessages(logging.Filter):
    def __init__(self, *prefixes: str) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).lstrip().startswith(self.prefixes)


def import_qwen_tts() -> ModuleType:
    """Import qwen_tts without its import-time noise (a flash-attn banner on stdout for the
    25 Hz tokenizer, which the 12 Hz models never use, and a SoX warning), and without the
    "Setting `pad_token_id`" warning that transformers logs on every generate call."""
    if "qwen_tts" in sys.modules:
        return sys.modules["qwen_tts"]
    logging.getLogger("sox").addFilter(_DropMessages("SoX could not be found"))
    logging.getLogger("transformers.generation.utils").addFilter(
        _DropMessages("Setting `pad_token_id`")
    )
    # with do_sample=False the package still passes its sampling temperature
    logging.getLogger("transformers.generation.configuration_utils").addFilter(
        _DropMessages("The following generation flags are not valid")
    )
    if "sox" not in sys.modules and shutil.which("sox") is None:
        _import_sox_without_shell_noise()
    with contextlib.redirect_stdout(io.StringIO()):
        import qwen_tts
    return qwen_tts


def _import_sox_without_shell_noise() -> None:
    # `import sox` probes `sox -h` through a shell, which prints "sox: not found" on fd 2
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        with contextlib.suppress(ImportError):  # qwen_tts's own import reports it
            import sox  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return _DTYPES[dtype]


def resolve_attn(attn: str, device: str) -> str:
    if attn == "auto":
        on_cuda = device.startswith("cuda")
        return "flash_attention_2" if on_cuda and importlib.util.find_spec("flash_attn") else "sdpa"
    return attn
