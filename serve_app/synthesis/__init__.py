"""The typed operations behind every surface, Ray handles included: the voice selector that
turns what a request names into one typed input (voice_selector.py), the one model call each
input becomes and its builder (model_call.py), the service that admits and runs it
(synthesis_service.py), admission and metering
(admission.py, metering.py), the ingress side of streams (audio_stream.py), the result cache
(cache.py), model availability and health (availability.py, health.py), the names clients may
use (catalog.py), saved voices (saved_voices.py) and jobs as requests (job_synthesis.py)."""
