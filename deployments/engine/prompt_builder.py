"""The prompt builder: the dual-track (text beside codec) prefill qwen-tts builds for every
model kind (CustomVoice speaker, VoiceDesign instruct, Base x-vector and ICL clone, text given
whole or read one token per frame), as embeddings, plus the trailing text rows the talker reads
one per step after the prompt.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from deployments.engine.request import PreparedRequest
from deployments.engine.text_input import wrap


class PromptBuilder:
    """Prompts of one checkpoint (the tokenizer and the talker's embeddings)."""

    def __init__(self, tts: Any) -> None:
        self._tts = tts
        self._talker = tts.model.talker
        self._predictor = self._talker.code_predictor
        self._tc = tc = tts.model.config.talker_config
        self._groups = int(tc.num_code_groups)
        p = next(self._talker.parameters())
        self._device, self._dtype = p.device, p.dtype
        cfg = tts.model.config
        with torch.inference_mode():
            ids = torch.tensor([[cfg.tts_bos_token_id, cfg.tts_eos_token_id,
                                 cfg.tts_pad_token_id]], device=self._device)
            self.tts_bos, self.tts_eos, self.tts_pad = self.text_embed(ids).chunk(3, dim=1)
            wrapped = self.tokenize(wrap(""))
        self._template_head, self._template_tail = wrapped[:, :3], wrapped[:, 3:]

    def ref_ids(self, ref_text: str) -> list[int]:
        """The reference transcript's text tokens (an ICL voice prompt)."""
        ids = self.tokenize(f"<|im_start|>assistant\n{ref_text}<|im_end|>\n")
        return [int(i) for i in ids[0, 3:-2]]

    def wrapped(self, ids: list[int]) -> torch.Tensor:
        """The prompt template around settled text tokens (text still arriving)."""
        t = torch.tensor([ids], dtype=torch.long, device=self._device)
        return torch.cat((self._template_head, t, self._template_tail), dim=1)

    def text_embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self._talker.text_projection(self._talker.get_text_embeddings()(ids))

    def codec_embed(self, ids: list[int] | torch.Tensor) -> torch.Tensor:
        t = ids if isinstance(ids, torch.Tensor) else torch.tensor([ids], device=self._device)
        return self._talker.get_input_embeddings()(t)

    def tokenize(self, text: str) -> torch.Tensor:
        ids = self._tts.processor(text=text, return_tensors="pt", padding=True)["input_ids"]
        ids = ids.to(self._device)
        return ids.unsqueeze(0) if ids.dim() == 1 else ids

    def build(self, p: PreparedRequest, non_streaming_mode: bool, input_id: torch.Tensor | None = None,
                closed: bool = True) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(prefill embeds (1, T, D), trailing text hiddens (N, D), text tokens): the inputs
        `Qwen3TTSForConditionalGeneration.generate` builds for one request. `input_id`: the
        wrapped text's ids when they are not `p.text`'s; `closed=False` (streaming-text mode
        only): more text will come, so the trailing rows do not end with tts_eos yet."""
        tc = self._tc
        if input_id is None:
            input_id = self.tokenize(wrap(p.text))
        parts: list[torch.Tensor] = []
        if p.instruct:
            instruct_id = self.tokenize(f"<|im_start|>user\n{p.instruct}<|im_end|>\n")
            parts.append(self.text_embed(instruct_id))
        vp = p.voice_prompt
        speaker_embed = None
        if vp is not None:
            speaker_embed = torch.as_tensor(np.asarray(vp.ref_spk_embedding, dtype=np.float32)).to(
                device=self._device, dtype=self._dtype)
        elif p.speaker:
            speaker_embed = self.codec_embed(torch.tensor(tc.spk_id[p.speaker], device=self._device))
        language_id = None if p.language == "auto" else tc.codec_language_id[p.language]
        if p.language in ("chinese", "auto") and p.speaker and tc.spk_is_dialect[p.speaker] is not False:
            language_id = tc.codec_language_id[tc.spk_is_dialect[p.speaker]]
        if language_id is None:
            prefix_ids = [tc.codec_nothink_id, tc.codec_think_bos_id, tc.codec_think_eos_id]
        else:
            prefix_ids = [tc.codec_think_id, tc.codec_think_bos_id, language_id, tc.codec_think_eos_id]
        codec0 = self.codec_embed(prefix_ids)
        codec1 = self.codec_embed([tc.codec_pad_id, tc.codec_bos_id])
        if speaker_embed is None:
            codec = torch.cat([codec0, codec1], dim=1)
        else:
            codec = torch.cat([codec0, speaker_embed.view(1, 1, -1), codec1], dim=1)
        role = self.text_embed(input_id[:, :3])
        pad, bos, eos = self.tts_pad, self.tts_bos, self.tts_eos
        body = torch.cat((pad.expand(-1, codec.shape[1] - 2, -1), bos), dim=1) + codec[:, :-1]
        embed = torch.cat((role, body), dim=1)
        text_tokens = int(input_id.shape[1]) - 8
        if vp is not None and vp.icl_mode:
            ref_id = self.tokenize(f"<|im_start|>assistant\n{vp.ref_text}<|im_end|>\n")
            ref_code = torch.as_tensor(np.asarray(vp.ref_code, dtype=np.int64), device=self._device)
            icl, trailing = self._icl(input_id[:, 3:-5], ref_id[:, 3:-2], ref_code,
                                             non_streaming_mode, closed)
            embed = torch.cat([embed, icl], dim=1)
        else:
            first = self.text_embed(input_id[:, 3:4]) + codec[:, -1:]
            embed = torch.cat([embed, first], dim=1)
            if non_streaming_mode:
                embed = embed[:, :-1]
                text = input_id[:, 3:-5]
                embed = torch.cat([
                    embed,
                    torch.cat((self.text_embed(text), eos), dim=1)
                    + self.codec_embed([tc.codec_pad_id] * (text.shape[1] + 1)),
                    pad + self.codec_embed([tc.codec_bos_id]),
                ], dim=1)
                trailing = pad
            else:
                trailing = self.text_embed(input_id[:, 4:-5])
                if closed:
                    trailing = torch.cat((trailing, eos), dim=1)
        parts.append(embed)
        return torch.cat(parts, dim=1), trailing[0], text_tokens

    def _icl(self, text_id: torch.Tensor, ref_id: torch.Tensor, ref_code: torch.Tensor,
                    non_streaming_mode: bool, closed: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """`generate_icl_prompt`: reference text + target text beside the reference codes.
        Open text (`closed=False`) has filled the reference's codes already (the scheduler admits it only then)."""
        tc = self._tc
        text_embed = self.text_embed(torch.cat([ref_id, text_id], dim=-1))
        if closed:
            text_embed = torch.cat([text_embed, self.tts_eos], dim=1)
        codec_embed = [self.codec_embed(ref_code[:, :1])]
        for i in range(1, self._groups):
            codec_embed.append(self._predictor.get_input_embeddings()[i - 1](ref_code[:, i:i + 1]))
        codec_embed = torch.cat(codec_embed, dim=1).sum(1).unsqueeze(0)
        codec_embed = torch.cat([self.codec_embed([tc.codec_bos_id]), codec_embed], dim=1)
        text_lens, codec_lens = text_embed.shape[1], codec_embed.shape[1]
        pad = self.tts_pad
        if non_streaming_mode:
            icl = text_embed + self.codec_embed([tc.codec_pad_id] * text_lens)
            return torch.cat([icl, codec_embed + pad], dim=1), pad
        if text_lens > codec_lens or not closed:
            return text_embed[:, :codec_lens] + codec_embed, text_embed[:, codec_lens:]
        text_embed = torch.cat([text_embed] + [pad] * (codec_lens - text_lens), dim=1)
        return text_embed + codec_embed, pad
