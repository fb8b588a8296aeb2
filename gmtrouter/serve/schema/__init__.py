"""Alembic's environment and the store's schema revisions (versions/); run through gmtrouter.serve.migrations."""
