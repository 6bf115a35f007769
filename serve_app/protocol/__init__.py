"""Wire formats, one module per public surface (seed, OpenAI, native handle/HTTP)."""
