"""HTTP only, one module per surface: parse the wire format (serve_app.protocol), call one
method of the replica's services (common.py), frame the answer (audio, JSON, a stream:
stream_responses.py). Uploads are read by uploads.py; the published OpenAPI document is
completed by contract.py. Nothing below this folder imports it."""
