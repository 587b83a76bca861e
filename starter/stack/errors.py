"""The stack's error, in a module of its own: the CLI names it in every command's error
handling, and importing starter.stack.up for it would load the catalog (SQLAlchemy,
Alembic) into every `abdr` call, about a second of start-up on a busy machine."""

from __future__ import annotations


class StackError(Exception):
    pass
