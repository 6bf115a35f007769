"""Gauges stay on /metrics while nothing changes: Ray's exporter drops a gauge series some
seconds after its last `set`, so every gauge's last value is set again on a timer."""

from __future__ import annotations

import threading

from deployments import metrics


class _RecordingGauge:
    def __init__(self) -> None:
        self.calls: list[tuple[float, dict]] = []
        self.changed = threading.Condition()

    def set(self, value: float, tags: dict) -> None:
        with self.changed:
            self.calls.append((value, dict(tags)))
            self.changed.notify_all()

    def wait_for_calls(self, n: int) -> list[tuple[float, dict]]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.calls) >= n, timeout=30), self.calls
            return list(self.calls)


def test_a_gauge_set_once_is_set_again_with_its_last_value(monkeypatch):
    monkeypatch.setattr(metrics, "GAUGE_REFRESH_S", 0.01)
    keeper, gauge = metrics._GaugeKeeper(), _RecordingGauge()
    keeper.set(gauge, 3, {"stage": "model"})
    keeper.set(gauge, 0, {"stage": "model"})
    calls = gauge.wait_for_calls(5)
    assert calls[:2] == [(3, {"stage": "model"}), (0, {"stage": "model"})]
    assert set(map(repr, calls[2:])) == {repr((0, {"stage": "model"}))}  # the last value only


def test_each_tag_set_keeps_its_own_value(monkeypatch):
    monkeypatch.setattr(metrics, "GAUGE_REFRESH_S", 0.01)
    keeper, gauge = metrics._GaugeKeeper(), _RecordingGauge()
    keeper.set(gauge, 2, {"model_kind": "custom_voice"})
    keeper.set(gauge, 5, {"model_kind": "base"})
    refreshed = gauge.wait_for_calls(6)[2:]
    assert (2, {"model_kind": "custom_voice"}) in refreshed
    assert (5, {"model_kind": "base"}) in refreshed
