"""The operators' dashboard: one server-rendered page plus small ES modules, served at ``/``.

The page is a client of the admin API and nothing else: it holds no data of
its own and has no route that changes anything. Sign-in is an API token kept
in the tab's ``sessionStorage`` and sent as ``Authorization: Bearer``; no
cookie is ever set, so a third-party page cannot make the browser act (no
CSRF). The price of that choice is that script injection would expose the
token, hence the strict Content-Security-Policy below (scripts and styles
from this origin only, no inline code) and a front end that only ever
inserts API data as text.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape

import pgkeep
from pgkeep.catalog.admin_models import AuditOutcome
from pgkeep.catalog.models import BackupStatus, BackupType
from pgkeep.services.verify import VerifyLevel

STATIC_PATH = "/static"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

# What "Back up now" offers: the types POST /backups accepts (tests/web checks they match the API's).
CREATABLE_TYPES = {
    "MANUAL": "a one-off backup, kept per the manual retention",
    "FULL": "a full backup, kept per the full-backup retention",
    "PRE_MIGRATION": "taken before a schema migration, kept longer",
}
VERIFY_LEVELS = {
    VerifyLevel.CHECKSUM: "the stored bytes match their checksum",
    VerifyLevel.ARCHIVE: "also decompress and read the whole archive",
    VerifyLevel.RESTORE: "restore drill: also restore into a scratch database and compare row counts",
}
AUDIT_ACTIONS = [
    "backup.create",
    "backup.verify",
    "backup.restore",
    "backup.delete",
    "backup.keep",
    "backup.cleanup",
    "token.create",
    "token.revoke",
]


def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("pgkeep.web", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def mount_web(app: FastAPI, *, api_prefix: str) -> None:
    """Serve the dashboard at ``/`` and its assets under ``/static`` on ``app``.

    ``api_prefix`` is where the admin router is mounted (``/api/admin``).
    """
    template = _environment().get_template("index.html")
    # Choices come from the catalog's enums, so the filters follow the model. (Importing
    # pgkeep.api here would be circular: pgkeep.api imports this module to mount it.)
    page = template.render(
        version=pgkeep.__version__,
        api_prefix=api_prefix,
        static=STATIC_PATH,
        creatable_types=list(CREATABLE_TYPES.items()),
        backup_types=[t.value for t in BackupType],
        backup_statuses=[s.value for s in BackupStatus],
        verify_levels=[(level.value, text) for level, text in VERIFY_LEVELS.items()],
        audit_actions=AUDIT_ACTIONS,
        audit_outcomes=[o.value for o in AuditOutcome],
    )

    def dashboard() -> HTMLResponse:
        return HTMLResponse(page, headers=PAGE_HEADERS)

    app.add_api_route("/", dashboard, methods=["GET"], include_in_schema=False, name="pgkeep_dashboard")

    if app.openapi_url:
        # Interactive API docs from pgkeep's own copy of Swagger UI, under the dashboard's
        # strict CSP (its start-up code is a file too): no CDN, no third-party code.
        docs_page = (
            _environment()
            .get_template("docs.html")
            .render(title=f"{app.title} - API docs", static=STATIC_PATH, openapi_url=app.openapi_url)
        )

        def docs() -> HTMLResponse:
            return HTMLResponse(docs_page, headers=PAGE_HEADERS)

        app.add_api_route("/docs", docs, methods=["GET"], include_in_schema=False, name="pgkeep_api_docs")
    app.mount(STATIC_PATH, StaticFiles(packages=[("pgkeep.web", "static")]), name="pgkeep_static")
