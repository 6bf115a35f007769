"""Jobs: resume from the last finished segment, a fair queue across tenants, sealed results.

- `segments_done`, `segment_chars`: how many segments of the job have their audio
  checkpointed in the blob store, and the segment length the text was cut at (a resumed job
  cuts it the same way whatever the runner's own setting).
- `claimed_at` (+ index with `tenant_id`): when the job was last claimed; a tenant's newest
  claim is when it was last served, which the fair queue orders by.
- `result_key_id`: the key that sealed the result blob; NULL for results written in the
  clear before this revision (still readable; `qtts admin rotate-voice-key` seals them).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-01
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from serve_app.platform.models import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("claimed_at", UTCDateTime()))
    op.add_column("jobs", sa.Column("segments_done", sa.Integer(), nullable=False,
                                    server_default="0"))
    op.add_column("jobs", sa.Column("segment_chars", sa.Integer()))
    op.add_column("jobs", sa.Column("result_key_id", sa.String(64)))
    op.create_index("ix_jobs_tenant_claimed", "jobs", ["tenant_id", "claimed_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_tenant_claimed", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        for column in ("result_key_id", "segment_chars", "segments_done", "claimed_at"):
            batch.drop_column(column)
