"""Durable async jobs: the store (a fair queue in the database, segment checkpoints, sealed
results), the runner loop, long-text segmentation, click-free joining and signed webhooks."""

from serve_app.platform.jobs.audio import crossfade_join
from serve_app.platform.jobs.runner import EncodedAudio, JobRunner, SegmentAudio, render_output
from serve_app.platform.jobs.store import (
    ClaimedJob,
    JobParams,
    JobRequest,
    JobStatus,
    JobStore,
    JobTicket,
)
from serve_app.platform.jobs.text import segment_text, split_sentences
from serve_app.platform.jobs.webhooks import SignatureError, WebhookSender, sign, verify_signature

__all__ = [
    "ClaimedJob", "EncodedAudio", "JobParams", "JobRequest", "JobRunner", "JobStatus", "JobStore", "JobTicket",
    "SegmentAudio", "SignatureError", "WebhookSender", "crossfade_join", "render_output",
    "segment_text", "sign", "split_sentences", "verify_signature",
]
