"""The routed turn and the answer text (kept by the chat proxy), the feedback's kind, a name for each key.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("routes", sa.Column("turn", sa.Integer, nullable=False, server_default="1"))
    op.add_column("routes", sa.Column("answer", sa.Text, nullable=True))
    op.add_column("feedback", sa.Column("kind", sa.String(16), nullable=False, server_default="record"))
    op.add_column("api_keys", sa.Column("name", sa.String(256), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("name")
    with op.batch_alter_table("feedback") as batch:
        batch.drop_column("kind")
    with op.batch_alter_table("routes") as batch:
        batch.drop_column("answer")
        batch.drop_column("turn")
