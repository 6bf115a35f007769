"""Random-weight models with the published checkpoints' real shapes (`real_configs/`, copies of
the released config.json files): the 0.6B and 1.7B talkers (28 layers, GQA, the 0.6B's talker
and predictor widths differ) built in memory, for tests and `benchmarks/gpu_suite.py`, so no
code path is only ever tried at tiny shapes.

The text tokenizer is the tiny checkpoint's (the prompt slicing needs only the chat framing;
the real special ids index the real 151,936-row text embedding directly) and the codec is a
tiny-width 12 Hz codec with the real 2,048-entry codebooks (it decodes real-range codes; its
audio is noise either way).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from deployments.engine.loading import import_qwen_tts

REAL_CONFIGS = Path(__file__).with_name("real_configs")
NAMES = tuple(sorted(p.stem for p in REAL_CONFIGS.glob("*.json")))
_BLOCK = 1_000_003


def build_real_shape(name: str, tiny_models_dir: Path, *, dtype: torch.dtype = torch.float32,
                     device: str = "cpu", seed: int = 0) -> Any:
    """A `qwen_tts.Qwen3TTSModel` with the real shapes of `name` (e.g.
    "Qwen3-TTS-12Hz-0.6B-CustomVoice") and random weights."""
    from deployments.engine import tiny

    import_qwen_tts()
    from qwen_tts import Qwen3TTSModel, Qwen3TTSTokenizer
    from qwen_tts.core import Qwen3TTSTokenizerV2Config, Qwen3TTSTokenizerV2Model
    from qwen_tts.core.models import (
        Qwen3TTSConfig,
        Qwen3TTSForConditionalGeneration,
        Qwen3TTSProcessor,
    )
    from transformers import EncodecFeatureExtractor

    cfg_dict = json.loads((REAL_CONFIGS / f"{name}.json").read_text())
    cfg = Qwen3TTSConfig(**{k: v for k, v in cfg_dict.items()
                            if k not in ("model_type", "architectures")})
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    with torch.device("meta"):
        model = Qwen3TTSForConditionalGeneration(cfg)
    # allocated in the target dtype (no float32 copy of 1.7B first), then a cheap random init
    # (HF's init of ~2B parameters takes minutes): weights N(0, 0.02), norms 1, biases 0
    model = model.to_empty(device=device).to(dtype).eval()
    with torch.no_grad():
        # a prime-length block of N(0, 0.02) tiled over every matrix: drawing ~2B normals
        # took 20 s here, copying takes a second; the prime length keeps rows from repeating
        gen = torch.Generator(device=device).manual_seed(seed)
        block = torch.randn(_BLOCK, generator=gen, device=device).mul_(0.02).to(dtype)
        for name, p in model.named_parameters():
            if p.dim() > 1:
                flat = p.view(-1)
                for start in range(0, flat.numel(), _BLOCK):
                    part = flat[start:start + _BLOCK]
                    part.copy_(block[:part.numel()])
                    block = block.roll(7919)  # the next tile starts elsewhere
            else:
                p.fill_(0.0 if name.endswith("bias") else 1.0)
        for _, b in model.named_buffers():
            if b.is_floating_point():
                b.zero_()
    _fix_rotary(model, device)
    scfg = tiny._speech_tokenizer_config()
    for part in ("encoder_config", "decoder_config"):
        scfg[part]["codebook_size"] = tiny.REAL_CODEBOOK
    scfg = Qwen3TTSTokenizerV2Config(**{k: v for k, v in scfg.items()
                                        if k not in ("model_type", "architectures")})
    with torch.device(device):
        codec = Qwen3TTSTokenizerV2Model(scfg)
    st = Qwen3TTSTokenizer()
    st.model = codec.to(dtype).eval()
    st.config = codec.config
    st.device = torch.device(device)
    st.feature_extractor = EncodecFeatureExtractor(feature_size=1, sampling_rate=24000)
    model.load_speech_tokenizer(st)
    model.load_generate_config(dict(tiny._GENERATE_DEFAULTS))
    proc = Qwen3TTSProcessor.from_pretrained(str(Path(tiny_models_dir) / "custom_voice"))
    return Qwen3TTSModel(model, proc, model.generate_config)


def _fix_rotary(model: torch.nn.Module, device: str) -> None:
    """Rotary inverse frequencies are buffers computed at init: on the meta device they were
    not, so compute them again on the real one."""
    for module in model.modules():
        if hasattr(module, "inv_freq") and hasattr(module, "rope_init_fn"):
            inv_freq, scaling = module.rope_init_fn(module.config, torch.device(device))
            module.inv_freq = inv_freq.to(device)
            module.original_inv_freq = module.inv_freq
            module.attention_scaling = scaling
