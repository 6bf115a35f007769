"""A tiny random-weight Qwen3-ForcedAligner checkpoint, built offline with qwen-asr's own
classes (`Qwen3ASRConfig`, `Qwen3ASRForConditionalGeneration`, `Qwen3ASRProcessor`).

It loads with the real `Qwen3ForcedAligner.from_pretrained(dir)` and runs its real `align` on
a CPU in milliseconds, so the tests and the CPU demo exercise the path a GPU deployment of
Qwen/Qwen3-ForcedAligner-0.6B takes. The layout is the real one scaled down (real: a 24-layer
1024-wide audio encoder, a 28-layer 1024-wide decoder, 5,000 timestamp classes of 80 ms);
random weights give random times, which the service repairs (serve_app.synthesis.word_timing).

Built once next to the tiny TTS checkpoints (QTTS_TINY_MODELS_DIR): in the sibling folder
`<that dir>-aligner` (their own folder holds only their build, which is replaced whole when
it is rebuilt), with its own marker, serialised on a lock file like them.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from deployments.engine.tiny import _file_lock, default_tiny_models_dir

FORMAT_VERSION = 1
MARKER = ".tiny-aligner.json"
CLASSES = 64  # timestamp classes (real: 5000)
SEGMENT_MS = 80.0
THINKER_TYPE = "qwen3_forced_aligner_thinker"  # each class is this many milliseconds, as the real checkpoint's
_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_start|>", "<|audio_end|>",
            "<|audio_pad|>", "<timestamp>"]
_CORPUS = ["Hello world.", "The quick brown fox jumps over the lazy dog.",
           "one two three four five six seven eight nine ten", "你好世界，第三章。"]


def tiny_aligner_path(root: Path | None = None) -> Path:
    """The aligner beside the tiny TTS checkpoints under `root`."""
    root = root or default_tiny_models_dir()
    return root.parent / f"{root.name}-aligner"


def ensure_tiny_aligner(root: str | Path | None = None, *, seed: int = 0) -> Path:
    """The tiny aligner's directory, built unless a complete build with `seed` is there."""
    base = Path(root).expanduser() if root is not None else default_tiny_models_dir()
    out = tiny_aligner_path(base)
    if _complete(out, seed):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(out.parent / f".{out.name}.lock"):
        if not _complete(out, seed):
            build_tiny_aligner(out, seed=seed)
    return out


def _complete(out: Path, seed: int) -> bool:
    try:
        marker = json.loads((out / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker == {"version": FORMAT_VERSION, "seed": seed}


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=384, special_tokens=_SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_CORPUS * 20, trainer)
    return Qwen2TokenizerFast(
        tokenizer_object=tok, bos_token=None, eos_token="<|im_end|>",
        pad_token="<|endoftext|>", unk_token=None, model_max_length=32768,
        additional_special_tokens=_SPECIAL[1:],
        extra_special_tokens={"audio_token": "<|audio_pad|>",
                              "audio_bos_token": "<|audio_start|>",
                              "audio_eos_token": "<|audio_end|>"})


def build_tiny_aligner(out: Path, *, seed: int = 0) -> Path:
    import torch
    from qwen_asr.core.transformers_backend import (
        Qwen3ASRConfig,
        Qwen3ASRForConditionalGeneration,
        Qwen3ASRProcessor,
    )
    from transformers import WhisperFeatureExtractor

    tokenizer = _tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _SPECIAL}
    hidden = 32
    config = Qwen3ASRConfig(
        thinker_config={
            "model_type": THINKER_TYPE, "classify_num": CLASSES,
            "audio_token_id": ids["<|audio_pad|>"],
            "audio_start_token_id": ids["<|audio_start|>"],
            "audio_config": {"num_mel_bins": 128, "encoder_layers": 1,
                             "encoder_attention_heads": 2, "encoder_ffn_dim": 64,
                             "d_model": 32, "output_dim": hidden, "n_window": 50,
                             "n_window_infer": 800, "downsample_hidden_size": 8,
                             "max_source_positions": 1500},
            "text_config": {"vocab_size": len(tokenizer), "hidden_size": hidden,
                            "intermediate_size": 64, "num_hidden_layers": 1,
                            "num_attention_heads": 2, "num_key_value_heads": 1,
                            "head_dim": 16, "rope_scaling": {
                                "rope_type": "default", "mrope_section": [2, 3, 3],
                                "interleaved": True, "mrope_interleaved": True}},
        },
        support_languages=["Chinese", "English"],
        timestamp_token_id=ids["<timestamp>"], timestamp_segment_time=SEGMENT_MS,
    )
    out = Path(out)
    tmp = Path(tempfile.mkdtemp(prefix=".aligner.build-", dir=out.parent if out.parent.exists()
                                else None))
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = Qwen3ASRForConditionalGeneration(config).eval()
            model.save_pretrained(str(tmp), safe_serialization=True)
        # transformers writes a sub-config's class model_type over the instance's; the
        # thinker's must name the forced aligner (it picks the timestamp-class head)
        saved = json.loads((tmp / "config.json").read_text())
        saved["thinker_config"]["model_type"] = THINKER_TYPE
        (tmp / "config.json").write_text(json.dumps(saved, indent=2))
        processor = Qwen3ASRProcessor(
            feature_extractor=WhisperFeatureExtractor(feature_size=128, sampling_rate=16000),
            tokenizer=tokenizer)
        processor.save_pretrained(str(tmp))
        (tmp / MARKER).write_text(json.dumps({"version": FORMAT_VERSION, "seed": seed}))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
