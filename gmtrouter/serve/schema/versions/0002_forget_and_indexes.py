"""Tombstones of forgotten users (their training-history records stay hidden after a restart); indexes.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "forgotten",
        sa.Column("user", sa.String(256), primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_routes_user", "routes", ["user"])
    op.create_index("ix_feedback_user", "feedback", ["user"])
    op.create_index("ix_feedback_created", "feedback", ["created"])


def downgrade() -> None:
    for index, table in (
        ("ix_feedback_created", "feedback"),
        ("ix_feedback_user", "feedback"),
        ("ix_routes_user", "routes"),
    ):
        op.drop_index(index, table_name=table)
    op.drop_table("forgotten")
