"""Tiny random-weight Qwen3-TTS checkpoints, built offline with qwen-tts's own classes.

They load with the real `Qwen3TTSModel.from_pretrained(dir)` and run the real inference code
on a CPU in milliseconds per frame, so tests and the CPU demo exercise the same path as a GPU
deployment. Random weights make noise and stop at random: check shapes, never content.

Layout under `out_dir`: `custom_voice/`, `voice_design/`, `base/` (each a full checkpoint with
its own `speech_tokenizer/`) and the marker `.tiny-models.json`, written last.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deployments.engine.types import ModelKind

#: Bump when the layout or the configs change: `ensure_tiny_models` then rebuilds.
FORMAT_VERSION = 1
MARKER = ".tiny-models.json"
CODEBOOK = 64  # tiny codec codebook size (real: 2048)
REAL_CODEBOOK = 2048

# Real codec ids, re-based onto the tiny codebook (id - 2048 + CODEBOOK) so the tiny
# checkpoints keep the real layout: [0, C) codes, [C, C + 1024) control/language/speaker ids.
_REAL_SPECIAL = {
    "codec_pad_id": 2148, "codec_bos_id": 2149, "codec_eos_token_id": 2150,
    "codec_think_id": 2154, "codec_nothink_id": 2155,
    "codec_think_bos_id": 2156, "codec_think_eos_id": 2157,
}
_REAL_LANGUAGES = {
    "english": 2050, "german": 2053, "spanish": 2054, "chinese": 2055, "japanese": 2058,
    "french": 2061, "korean": 2064, "russian": 2069, "italian": 2070, "portuguese": 2071,
}
_REAL_DIALECTS = {"sichuan_dialect": 2062, "beijing_dialect": 2074}
#: The nine CustomVoice presets: speaker id -> (real codec id, dialect or False).
_REAL_SPEAKERS: dict[str, tuple[int, str | bool]] = {
    "serena": (3066, False), "vivian": (3065, False), "uncle_fu": (3010, False),
    "ryan": (3061, False), "aiden": (2861, False), "ono_anna": (2873, False),
    "sohee": (2864, False), "eric": (2875, "sichuan_dialect"), "dylan": (2878, "beijing_dialect"),
}
_GENERATE_DEFAULTS = {  # the keys Qwen3TTSModel reads from generation_config.json
    "do_sample": True, "top_k": 50, "top_p": 1.0, "temperature": 0.9,
    "repetition_penalty": 1.05, "subtalker_dosample": True, "subtalker_top_k": 50,
    "subtalker_top_p": 1.0, "subtalker_temperature": 0.9,
}
_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>",
                   "<|tts_pad|>", "<|tts_text_bos|>", "<|tts_text_eod|>"]
_QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_CORPUS = [
    "assistant", "user", "system", "Hello world.", "This is a tiny test model for Qwen3 TTS.",
    "The quick brown fox jumps over the lazy dog.", "Speak in a calm, warm voice.",
    "She said she would be here by noon.", "Numbers 0 1 2 3 4 5 6 7 8 9.",
    "其实我真的有发现，我是一个特别善于观察别人情绪的人。", "こんにちは", "안녕하세요",
]
_PREPROCESSOR_CONFIG = {
    "feature_extractor_type": "EncodecFeatureExtractor", "feature_size": 1,
    "sampling_rate": 24000, "padding_side": "right", "padding_value": 0.0,
    "return_attention_mask": True, "chunk_length_s": None, "overlap": None,
}


def default_tiny_models_dir() -> Path:
    """`$QTTS_TINY_MODELS_DIR`, else `~/.cache/qwen3-tts-serve/tiny-models`."""
    env = os.environ.get("QTTS_TINY_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "qwen3-tts-serve" / "tiny-models"


def tiny_model_paths(out_dir: str | Path) -> dict[ModelKind, Path]:
    root = Path(out_dir)
    return {kind: root / kind.value for kind in ModelKind}


def read_marker(out_dir: str | Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(out_dir) / MARKER).read_text())
    except (OSError, ValueError):
        return None


def ensure_tiny_models(
    out_dir: str | Path | None = None, *, seed: int = 0, max_new_tokens: int = 48
) -> dict[ModelKind, Path]:
    """Build the tiny checkpoints unless `out_dir` already holds a complete build of this
    format version with the same seed and max_new_tokens (the marker is written last).

    Concurrent callers (parallel test sessions, `qtts demo`) serialise on a lock file next
    to `out_dir`, so only one of them builds.
    """
    root = Path(out_dir).expanduser() if out_dir is not None else default_tiny_models_dir()
    wanted = {"version": FORMAT_VERSION, "seed": seed, "max_new_tokens": max_new_tokens}
    if _is_complete(root, wanted):
        return tiny_model_paths(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(root.parent / f".{root.name}.lock"):
        if _is_complete(root, wanted):  # another process built it while we waited
            return tiny_model_paths(root)
        return build_tiny_models(root, seed=seed, max_new_tokens=max_new_tokens)


def _is_complete(root: Path, wanted: dict[str, Any]) -> bool:
    marker = read_marker(root)
    return (
        marker is not None
        and all(marker.get(k) == v for k, v in wanted.items())
        and all((p / "config.json").is_file() for p in tiny_model_paths(root).values())
    )


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_tiny_models(
    out_dir: str | Path, *, seed: int = 0, max_new_tokens: int = 48
) -> dict[ModelKind, Path]:
    """Build the three tiny checkpoints into a temp dir next to `out_dir`, then swap it in.

    An existing `out_dir` is replaced only when it holds nothing but a (possibly partial)
    tiny build, so a mistyped path never deletes unrelated files.
    """
    import torch

    root = Path(out_dir).expanduser().absolute()
    known = {MARKER, *(kind.value for kind in ModelKind)}
    if root.exists() and not {p.name for p in root.iterdir()} <= known:
        raise FileExistsError(f"{root} exists and holds more than tiny models: not replacing it")
    root.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.build-", dir=root.parent))
    tmp.chmod(0o755)
    try:
        with torch.random.fork_rng(devices=[]):
            speech_dir = tmp / ".speech_tokenizer"
            _build_speech_tokenizer(speech_dir, seed)
            text_tok = _build_text_tokenizer()
            for i, kind in enumerate(ModelKind):
                _build_tts(tmp / kind.value, kind, text_tok, speech_dir, seed + 1 + i,
                           max_new_tokens)
            shutil.rmtree(speech_dir)
        marker = {"version": FORMAT_VERSION, "seed": seed, "max_new_tokens": max_new_tokens,
                  "codebook": CODEBOOK, "build_seconds": round(time.perf_counter() - t0, 2)}
        (tmp / MARKER).write_text(json.dumps(marker, indent=2))
        _swap_in(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return tiny_model_paths(root)


def _swap_in(tmp: Path, root: Path) -> None:
    old = None
    if root.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
        os.replace(root, old / "x")
    os.replace(tmp, root)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- components
def _rebase(real_id: int) -> int:
    return CODEBOOK + (real_id - REAL_CODEBOOK)


def _build_text_tokenizer():
    """A 512-token byte-level BPE with Qwen2's pre-tokenizer and the TTS special tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=_SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_CORPUS * 50 + ["assistant\nuser\n"] * 200, trainer)
    fast = Qwen2TokenizerFast(
        tokenizer_object=tok, bos_token=None, eos_token="<|im_end|>",
        pad_token="<|endoftext|>", unk_token=None, model_max_length=32768,
    )
    fast.add_special_tokens({"additional_special_tokens": _SPECIAL_TOKENS[1:]})
    # Qwen3TTSForConditionalGeneration.generate slices the prompt assuming these lengths.
    if len(fast("<|im_start|>assistant\n")["input_ids"]) != 3 or len(
        fast("<|im_end|>\n<|im_start|>assistant\n")["input_ids"]
    ) != 5:
        raise RuntimeError("tiny text tokenizer breaks qwen-tts's prompt slicing")
    return fast


def _speech_tokenizer_config() -> dict[str, Any]:
    c = CODEBOOK
    return {
        "model_type": "qwen3_tts_tokenizer_12hz", "architectures": ["Qwen3TTSTokenizerV2Model"],
        "encoder_valid_num_quantizers": 16, "input_sample_rate": 24000,
        "output_sample_rate": 24000, "decode_upsample_rate": 1920, "encode_downsample_rate": 1920,
        "encoder_config": {  # MimiConfig with the real strides (24 kHz -> 12.5 Hz)
            "sampling_rate": 24000, "frame_rate": 12.5, "audio_channels": 1, "hidden_size": 32,
            "num_filters": 4, "num_residual_layers": 1, "upsampling_ratios": [8, 6, 5, 4],
            "codebook_size": c, "codebook_dim": 16, "num_quantizers": 16,
            "num_semantic_quantizers": 1, "vector_quantization_hidden_dimension": 16,
            "upsample_groups": 32, "num_hidden_layers": 1, "intermediate_size": 64,
            "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 16,
            "sliding_window": 250, "use_cache": False,
        },
        "decoder_config": {  # real upsampling: 8*5*4*3*2*2 = 1920 samples per frame
            "codebook_size": c, "codebook_dim": 16, "latent_dim": 32, "hidden_size": 32,
            "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
            "num_key_value_heads": 2, "head_dim": 16, "sliding_window": 72,
            "num_quantizers": 16, "upsample_rates": [8, 5, 4, 3], "upsampling_ratios": [2, 2],
            "decoder_dim": 32, "max_position_embeddings": 8000,
        },
    }


def _build_speech_tokenizer(out_dir: Path, seed: int) -> None:
    import torch

    from deployments.engine.engine import import_qwen_tts

    import_qwen_tts()  # quietly, before qwen_tts.core's import-time banners
    from qwen_tts.core import Qwen3TTSTokenizerV2Config, Qwen3TTSTokenizerV2Model

    torch.manual_seed(seed)
    cfg = Qwen3TTSTokenizerV2Config(**_speech_tokenizer_config())
    model = Qwen3TTSTokenizerV2Model(cfg).eval()
    with torch.no_grad():
        # codebooks start at zero: random entries so that different codes sound different
        for name, p in model.named_parameters():
            if name.endswith("embedding_sum"):
                p.normal_(0.0, 1.0)
        for name, b in model.named_buffers():
            if name.endswith("embed_sum"):
                b.normal_(0.0, 1.0)
        # HF init (std 0.02) makes the vocoder output ~1e-9: torch's default conv init, then
        # scale the last conv so random codes give audible noise (mean |x| ~ 0.1).
        for mod in model.decoder.modules():
            if isinstance(mod, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
                mod.reset_parameters()
        codes = torch.randint(0, CODEBOOK, (1, cfg.decoder_config.num_quantizers, 25))
        level = model.decoder(codes).abs().mean().clamp(min=1e-12)
        model.decoder.decoder[-1].conv.weight.mul_(0.1 / level)
        model.decoder.decoder[-1].conv.bias.zero_()
    model.save_pretrained(str(out_dir))
    (out_dir / "preprocessor_config.json").write_text(json.dumps(_PREPROCESSOR_CONFIG, indent=2))


def _tts_config(kind: ModelKind, text_tok) -> dict[str, Any]:
    common = {"rope_theta": 1000000, "rms_norm_eps": 1e-6, "hidden_act": "silu",
              "attention_bias": False, "use_sliding_window": False}
    code_predictor = {
        "vocab_size": CODEBOOK, "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
        "head_dim": 16, "max_position_embeddings": 64, "num_code_groups": 16,
        "rope_scaling": None, **common,
    }
    languages = {k: _rebase(v) for k, v in _REAL_LANGUAGES.items()}
    speakers: dict[str, tuple[int, str | bool]] = {}
    if kind is ModelKind.CUSTOM_VOICE:
        languages.update({k: _rebase(v) for k, v in _REAL_DIALECTS.items()})
        speakers = {k: (_rebase(v), d) for k, (v, d) in _REAL_SPEAKERS.items()}
    talker = {
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
        "text_hidden_size": 32, "text_vocab_size": len(text_tok),
        "rope_scaling": {"rope_type": "default", "mrope_section": [3, 3, 2], "interleaved": True},
        "max_position_embeddings": 4096, **common,
        # the package suppresses the top 1024 ids: vocab must be codebook + 1024
        "vocab_size": CODEBOOK + 1024, "num_code_groups": 16,
        "code_predictor_config": code_predictor,
        **{k: _rebase(v) for k, v in _REAL_SPECIAL.items()},
        "codec_language_id": languages,
        "spk_id": {k: v[0] for k, v in speakers.items()},
        "spk_is_dialect": {k: v[1] for k, v in speakers.items()},
    }
    ids = {name: text_tok.convert_tokens_to_ids(tok) for name, tok in (
        ("im_start_token_id", "<|im_start|>"), ("im_end_token_id", "<|im_end|>"),
        ("tts_pad_token_id", "<|tts_pad|>"), ("tts_bos_token_id", "<|tts_text_bos|>"),
        ("tts_eos_token_id", "<|tts_text_eod|>"),
    )}
    cfg = {"model_type": "qwen3_tts", "architectures": ["Qwen3TTSForConditionalGeneration"],
           "tokenizer_type": "qwen3_tts_tokenizer_12hz", "tts_model_size": "tiny",
           "tts_model_type": kind.value, "talker_config": talker, **ids}
    if kind is ModelKind.BASE:
        cfg["speaker_encoder_config"] = {
            "mel_dim": 128, "enc_dim": 64, "enc_channels": [32, 32, 32, 32, 96],
            "enc_kernel_sizes": [5, 3, 3, 3, 1], "enc_dilations": [1, 2, 3, 4, 1],
            "enc_attention_channels": 16, "enc_res2net_scale": 4, "enc_se_channels": 16,
            "sample_rate": 24000,
        }
    return cfg


def _build_tts(out_dir: Path, kind: ModelKind, text_tok, speech_dir: Path, seed: int,
               max_new_tokens: int) -> None:
    import torch
    from qwen_tts.core.models import (
        Qwen3TTSConfig,
        Qwen3TTSForConditionalGeneration,
        Qwen3TTSProcessor,
    )

    torch.manual_seed(seed)
    cfg_dict = _tts_config(kind, text_tok)
    model = Qwen3TTSForConditionalGeneration(Qwen3TTSConfig(**cfg_dict)).eval()
    model.save_pretrained(str(out_dir))
    # save_pretrained's config.json does not reload (the speaker encoder config rejects its
    # serialised model_type): write the plain dict instead.
    (out_dir / "config.json").write_text(
        json.dumps({**cfg_dict, "transformers_version": "4.57.3", "dtype": "float32"}, indent=2)
    )
    # the wrapper reads its sampling defaults from generation_config.json; a small
    # max_new_tokens bounds the noise (random weights rarely emit EOS)
    gen = {**_GENERATE_DEFAULTS, "max_new_tokens": max_new_tokens}
    (out_dir / "generation_config.json").write_text(json.dumps(gen, indent=2))
    Qwen3TTSProcessor(tokenizer=text_tok).save_pretrained(str(out_dir))
    shutil.copytree(speech_dir, out_dir / "speech_tokenizer")
