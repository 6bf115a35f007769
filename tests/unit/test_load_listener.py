"""The load benchmark's listener (benchmarks/listener.py): where the first audible sample is,
and what a player that starts there hears of pieces arriving at given times."""

from __future__ import annotations

import numpy as np

from benchmarks.listener import Pcm16Pieces, first_audible_sample, hear

RATE = 24_000


def tone(seconds: float, level: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (level * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_first_audible_sample_skips_leading_silence_below_minus_45_dbfs():
    quiet = np.full(RATE // 10, 10 ** (-50 / 20), np.float32)  # -50 dBFS: not audible
    audio = np.concatenate([quiet, tone(0.1)])
    assert first_audible_sample(audio, RATE) == quiet.size
    assert first_audible_sample(quiet, RATE) is None


def test_pieces_that_arrive_ahead_of_playback_leave_no_gap():
    # 80 ms pieces arriving every 40 ms: always ahead of the player
    pieces = [(0.1 + 0.04 * i, tone(0.08)) for i in range(10)]
    heard = hear(pieces, RATE)
    assert heard.first_byte == heard.first_audio == 0.1
    assert heard.gaps == []
    assert abs(heard.audio_s - 0.8) < 1e-6


def test_a_late_piece_is_one_gap_of_its_lateness_and_shifts_the_rest():
    # first piece 80 ms at t=0.1 plays until 0.18; the second arrives at 0.25 (70 ms late);
    # the third is due 80 ms after the second started playing (0.33) and arrives at 0.30
    pieces = [(0.10, tone(0.08)), (0.25, tone(0.08)), (0.30, tone(0.08))]
    heard = hear(pieces, RATE)
    assert len(heard.gaps) == 1
    assert abs(heard.gaps[0] - 0.07) < 1e-6
    assert abs(heard.gap_at[0] - 0.08) < 1e-6  # after the first 80 ms of audio
    assert abs(heard.gap_max - 0.07) < 1e-6


def test_playback_starts_at_the_first_audible_piece_not_the_first_byte():
    silence = np.zeros(RATE // 10, np.float32)
    pieces = [(0.05, silence), (0.30, tone(0.08)), (0.35, tone(0.08))]
    heard = hear(pieces, RATE)
    assert heard.first_byte == 0.05 and heard.first_audio == 0.30
    assert heard.gaps == []  # the silent piece's lateness is not a gap


def test_no_audible_audio_means_no_first_audio_and_no_gaps():
    heard = hear([(0.1, np.zeros(2400, np.float32))], RATE)
    assert heard.first_audio is None and heard.gaps == []
    assert hear([], RATE).first_byte is None


def test_pcm16_pieces_rejoin_a_sample_split_across_reads():
    samples = (np.arange(10, dtype=np.int16) * 1000).astype("<i2").tobytes()
    pcm = Pcm16Pieces()
    pcm.add(0.1, samples[:5])
    pcm.add(0.2, samples[5:])
    joined = np.concatenate([p for _, p in pcm.pieces])
    assert joined.size == 10
    assert np.allclose(joined * 32768, np.arange(10) * 1000)
