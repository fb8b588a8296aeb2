"""Routes, feedback (canonical record JSON, unique idempotency key), hashed API keys.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "routes",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user", sa.String(256), nullable=False),
        sa.Column("query", sa.Text, nullable=False),
        sa.Column("candidates", sa.Text, nullable=False),  # JSON list
        sa.Column("choice", sa.String(256), nullable=False),
        sa.Column("ranking", sa.Text, nullable=False),  # JSON list of {llm, score, expected_cost, adjusted}
        sa.Column("created", sa.Float, nullable=False),
    )
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(512), nullable=False, unique=True),
        sa.Column("route_id", sa.String(64), nullable=True),
        sa.Column("user", sa.String(256), nullable=False),
        sa.Column("record", sa.Text, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(128), nullable=False),
        sa.Column("users", sa.Text, nullable=False),  # JSON list of user ids or 'prefix*' patterns
        sa.Column("admin", sa.Boolean, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("revoked", sa.Float, nullable=True),
    )


def downgrade() -> None:
    for table in ("api_keys", "feedback", "routes"):
        op.drop_table(table)
