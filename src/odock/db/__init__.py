"""Database: the declarative base, engine factory and the Alembic migration chain."""
