"""LLMs added or retired at run time (the `llms` table); whether a route explored and which arm chose it.

Routes stored before this revision were all made by the router, except those to an LLM the request named (an
empty ranking), which keep no arm.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "llms",
        sa.Column("name", sa.String(256), primary_key=True),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("input_price", sa.Float, nullable=True),
        sa.Column("output_price", sa.Float, nullable=True),
        sa.Column("upstream", sa.Text, nullable=True),
        sa.Column("added", sa.Float, nullable=True),
        sa.Column("retired", sa.Float, nullable=True),
    )
    op.add_column("routes", sa.Column("explored", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("routes", sa.Column("arm", sa.String(16), nullable=True))
    op.execute("UPDATE routes SET arm = 'router' WHERE ranking != '[]'")


def downgrade() -> None:
    with op.batch_alter_table("routes") as batch:
        batch.drop_column("arm")
        batch.drop_column("explored")
    op.drop_table("llms")
