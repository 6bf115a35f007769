"""What a clip holds, measured with pretrained models whose weights ship in their packages
(offline, in CI): where the speech is (silero-vad) and whose voice it is (resemblyzer's GE2E
speaker encoder). Plain Python, no Ray: the AudioProcessor runs them on CPU."""

from __future__ import annotations

from .speaker_embedding import SpeakerEncoder, speaker_similarity
from .speech_activity import SpeechActivity, SpeechDetector

__all__ = ["SpeakerEncoder", "SpeechActivity", "SpeechDetector", "speaker_similarity"]
