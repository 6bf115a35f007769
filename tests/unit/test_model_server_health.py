"""A model replica that cannot serve fails Serve's health check, so Serve replaces it."""

from __future__ import annotations

import pytest

from deployments.model_server import ModelServer


class _LoadedEngine:
    """What check_health needs of an engine: to be there (and to close with its replica)."""

    def close(self) -> None:
        pass


def _replica(engine: object | None):
    replica = object.__new__(ModelServer.func_or_class)
    replica._engine = engine
    replica._fatal = None
    return replica


def test_a_loaded_replica_passes_its_health_check():
    _replica(engine=_LoadedEngine()).check_health()


def test_a_replica_without_a_model_fails_its_health_check():
    with pytest.raises(RuntimeError, match="model not loaded"):
        _replica(engine=None).check_health()


def test_a_cuda_error_fails_every_later_health_check_but_a_bad_request_does_not():
    replica = _replica(engine=_LoadedEngine())
    replica._note_failure(ValueError("unsupported speaker 'x'"))
    replica.check_health()
    replica._note_failure(RuntimeError("CUDA error: device-side assert triggered"))
    with pytest.raises(RuntimeError, match="unusable"):
        replica.check_health()
