"""The admin REST API (FastAPI): ``create_app`` for ``pgkeep serve``, ``admin_router`` to mount.

Layering: this package calls ``pgkeep.services``; nothing below imports it.
"""

from pgkeep.api.app import create_app
from pgkeep.api.auth import Principal, current_principal, require
from pgkeep.api.problems import install_problem_handlers
from pgkeep.api.router import admin_router
from pgkeep.catalog.admin_models import Role

__all__ = [
    "Principal",
    "Role",
    "admin_router",
    "create_app",
    "current_principal",
    "install_problem_handlers",
    "require",
]
