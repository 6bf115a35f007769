"""Qwen3-TTS Serve: the application (builder, ingress, settings, CLI)."""

__version__ = "0.1.0"
