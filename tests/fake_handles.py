"""Stand-ins for Ray DeploymentHandles over plain objects, for tests that run the service
without Ray: `handle.method.remote(...)` calls the object's method and returns what it
returns (a coroutine for an async method, as the service awaits)."""

from __future__ import annotations


class Remote:
    """One handle method: `.remote(...)` calls `fn`."""

    def __init__(self, fn):
        self._fn = fn

    def remote(self, *args, **kwargs):
        return self._fn(*args, **kwargs)


class FakeHandle:
    """A DeploymentHandle's shape over a plain object's methods."""

    def __init__(self, target):
        self._target = target

    def options(self, **_):
        return self

    def __getattr__(self, name):
        return Remote(getattr(self._target, name))
