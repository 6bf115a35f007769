"""Every wire model, and nothing else: one module per public surface (seed_api, openai_api,
audio_api for design/clone, voices_api, jobs_api, admin_api, clients_api, session_api), the
typed operations the handle API and the routes share (speech.py), the error envelope
(envelope.py) and the field types they all use (fields.py). Validation of the shapes lives
here; nothing here calls a service."""
