"""A route's conversation id, the previous turn's LLM it was routed after, and its switch cost; an index to find
the newest route of a user's conversation.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("routes", sa.Column("conversation", sa.String(256), nullable=True))
    op.add_column("routes", sa.Column("previous_llm", sa.String(256), nullable=True))
    op.add_column("routes", sa.Column("switch_cost", sa.Float, nullable=False, server_default="0"))
    op.create_index("ix_routes_user_conversation", "routes", ["user", "conversation", "created"])


def downgrade() -> None:
    op.drop_index("ix_routes_user_conversation", table_name="routes")
    with op.batch_alter_table("routes") as batch:
        batch.drop_column("switch_cost")
        batch.drop_column("previous_llm")
        batch.drop_column("conversation")
