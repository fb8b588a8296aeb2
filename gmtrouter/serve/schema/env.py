"""Alembic's environment: run the revisions on the connection (and in the transaction) the caller holds.

`gmtrouter.serve.migrations` opens the transaction and takes the lock that makes concurrent replicas migrate
once; this file only hands that connection to Alembic.
"""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
