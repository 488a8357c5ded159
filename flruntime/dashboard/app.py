"""The dashboard's Flask application: two pages that poll JSON endpoints, downloads, and two POST actions.

Every request but ``/login`` needs a live session: redeeming a one-time token opens one on the server
(:class:`~flruntime.dashboard.auth.Sessions`) and the cookie (signed, HttpOnly, SameSite=Strict) carries its id;
``/logout`` closes it, so a copy of the cookie no longer works either. Without one, pages answer 401 with a page
that says how to log in, JSON endpoints 401 with ``{"error": ...}``. Abort, clone and downloads run as the
session's admin through the server's admin commands, so the policy and the audit log are the same as for the
console; POSTs also need the session's CSRF token.
"""

from __future__ import annotations

import hmac
import json
import secrets
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, abort, g, jsonify, redirect, render_template, request, send_file, session

from flruntime import __version__
from flruntime.dashboard.auth import SESSION_TTL, LoginTokens, Sessions
from flruntime.dashboard.views import CurveReader, cross_val, job_rows, log_tails, model_files, run_dir, site_rows
from flruntime.federation.jobs import JobRecord
from flruntime.federation.kit import Member
from flruntime.federation.policy import allowed
from flruntime.transport.streaming import control

if TYPE_CHECKING:
    from flruntime.dashboard.host import DashboardHost

#: How long a dashboard session lasts.
SESSION_LIFETIME = timedelta(seconds=SESSION_TTL)
#: The admin command that prints a login link.
LOGIN_HINT = "flruntime admin -c dashboard_login"
#: Security headers of every answer.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
#: Where the actions' audit entries say they came from.
VIA = "dashboard"


@cache
def plotly_js() -> bytes:
    """plotly.js as the installed ``plotly`` package ships it (served locally: no CDN)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode("utf-8")


def create_app(server: DashboardHost, tokens: LoginTokens, sessions: Sessions | None = None) -> Flask:
    """The dashboard of ``server``; logins redeem ``tokens`` and open ``sessions`` (default: a new, empty set)."""
    live = sessions if sessions is not None else Sessions(ttl=SESSION_LIFETIME.total_seconds())
    here = Path(__file__).parent
    app = Flask(__name__, template_folder=str(here / "templates"), static_folder=str(here / "static"))
    app.config.update(
        SECRET_KEY=secrets.token_bytes(32),
        SESSION_COOKIE_NAME="flruntime_dashboard",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
    )
    reader = CurveReader()

    # --- sessions ----------------------------------------------------------------------------------------

    def login_page(why: str, status: int = 401) -> Response:
        kit = server.kit
        html = render_template("login.html", why=why, hint=LOGIN_HINT, project=kit.project, server=kit.name)
        return Response(html, status=status, mimetype="text/html")

    def refuse(status: int, error: str) -> Response:
        response = jsonify(error=error)
        response.status_code = status
        return response

    @app.before_request
    def need_session() -> Response | None:
        if request.endpoint == "login":
            return None
        sid = session.get("sid")
        viewer = live.get(sid) if isinstance(sid, str) else None
        member = server.kit.members.get(viewer.name) if viewer else None
        if viewer is None or member is None or (member.org, member.role) != (viewer.org, viewer.role):
            why = f"not logged in: get a login link with `{LOGIN_HINT}`"
            return refuse(401, why) if request.path.startswith("/api/") else login_page(why)
        g.viewer = viewer
        g.member = Member(viewer.name, "admin", viewer.org, viewer.role)
        if request.method == "POST" and not hmac.compare_digest(
            request.headers.get("X-CSRF-Token", ""), str(session.get("csrf", ""))
        ):
            return refuse(403, "missing or wrong CSRF token (reload the page)")
        return None

    @app.after_request
    def secure(response: Response) -> Response:
        response.headers.update(HEADERS)
        if request.path.startswith("/api/") or response.mimetype == "text/html":
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/login")
    def login() -> Any:
        viewer = tokens.redeem(request.args.get("token", ""))
        if viewer is None:
            return login_page("this login link is unknown, used or expired: get a new one")
        end_session()
        session.permanent = True
        session["sid"] = live.open(viewer)
        session["csrf"] = secrets.token_urlsafe(24)
        return redirect("/", code=303)

    def end_session() -> None:
        sid = session.get("sid")
        if isinstance(sid, str):
            live.close(sid)
        session.clear()

    @app.get("/logout")
    def logout() -> Response:
        end_session()
        return login_page("logged out", status=200)

    # --- helpers -----------------------------------------------------------------------------------------

    def record(job_id: str) -> JobRecord:
        rec = server.store.get(job_id)
        if rec is None:
            abort(404, f"no job with id {job_id}")
        return rec

    def may(command: str, rec: JobRecord) -> bool:
        return allowed(g.viewer.role, g.viewer.org, command, rec.submitter_org) == ""

    def can(rec: JobRecord) -> dict[str, bool]:
        return {"abort": may("abort_job", rec), "clone": may("clone_job", rec), "download": may("download_job", rec)}

    def me() -> dict[str, str]:
        return {"name": g.viewer.name, "org": g.viewer.org, "role": g.viewer.role}

    @app.errorhandler(404)
    def not_found(exc: Any) -> Response:
        why = getattr(exc, "description", "not found")
        if request.path.startswith("/api/"):
            return refuse(404, why)
        return Response(render_template("error.html", why=why), status=404, mimetype="text/html")

    # --- pages ---------------------------------------------------------------------------------------------

    @app.get("/")
    def index() -> str:
        return render_template("index.html", kit=server.kit, me=me(), csrf=session["csrf"], version=__version__)

    @app.get("/jobs/<job_id>")
    def job_page(job_id: str) -> str:
        rec = record(job_id)
        return render_template(
            "job.html", kit=server.kit, me=me(), csrf=session["csrf"], job=rec, can=can(rec), version=__version__
        )

    @app.get("/vendor/plotly.min.js")
    def plotly() -> Response:
        response = Response(plotly_js(), mimetype="text/javascript")
        response.headers["Cache-Control"] = "private, max-age=86400"
        return response

    # --- JSON ----------------------------------------------------------------------------------------------

    @app.get("/api/overview")
    def overview() -> Response:
        records = server.store.all()
        snap = server.snapshot()
        return jsonify(
            me=me(),
            server={"name": server.kit.name, "project": server.kit.project, "uptime_s": snap["uptime_s"]},
            sites=site_rows(server, records),
            jobs=job_rows(records),
        )

    @app.get("/api/jobs/<job_id>")
    def job(job_id: str) -> Response:
        rec = record(job_id)
        models = model_files(run_dir(server, job_id)) if may("download_job", rec) else []
        return jsonify(job={**rec.as_dict(), "finished": rec.status.finished}, can=can(rec), models=models)

    @app.get("/api/jobs/<job_id>/metrics")
    def metrics(job_id: str) -> Response:
        return jsonify(curves=reader.curves(run_dir(server, record(job_id).job_id)))

    @app.get("/api/jobs/<job_id>/crossval")
    def crossval(job_id: str) -> Response:
        return jsonify(matrices=cross_val(run_dir(server, record(job_id).job_id)))

    @app.get("/api/jobs/<job_id>/logs")
    def logs(job_id: str) -> Response:
        rec = record(job_id)
        return jsonify(logs=log_tails(run_dir(server, rec.job_id), rec.sites))

    # --- actions: the server's admin commands, as the session's admin ------------------------------------

    def command(name: str, job_id: str) -> Response:
        reply = json.loads(server.commands.run(g.member, control(command=name, args={"job_id": job_id, "via": VIA})))
        if reply.get("ok"):
            return jsonify(reply)
        error = str(reply.get("error") or f"{name} failed")
        status = 403 if reply.get("refused") else 404 if error.startswith("no job") else 409
        return refuse(status, error)

    @app.post("/api/jobs/<job_id>/abort")
    def abort_job(job_id: str) -> Response:
        return command("abort_job", job_id)

    @app.post("/api/jobs/<job_id>/clone")
    def clone_job(job_id: str) -> Response:
        return command("clone_job", job_id)

    @app.get("/jobs/<job_id>/download")
    def download(job_id: str) -> Response:
        data, error = server.commands.download(g.member, {"job_id": job_id, "via": VIA})
        if error:
            abort(403 if error.startswith("not authorised") else 404, error)
        response = Response(data, mimetype="application/zip")
        response.headers["Content-Disposition"] = f'attachment; filename="{job_id}.zip"'
        return response

    @app.get("/jobs/<job_id>/models/<path:name>")
    def model(job_id: str, name: str) -> Response:
        rec = record(job_id)
        args = {"job_id": job_id, "file": name, "via": VIA}
        why = allowed(g.viewer.role, g.viewer.org, "download_job", rec.submitter_org)
        folder = run_dir(server, rec.job_id)
        if not why and name not in model_files(folder):
            why, result = f"job {job_id} has no model file {name}", "failed"
        else:
            result = "refused" if why else "ok"
        server.audit.write(g.viewer.name, g.viewer.org, g.viewer.role, "download_job", args, result, why)
        if why:
            abort(404 if result == "failed" else 403, why if result == "failed" else f"not authorised: {why}")
        return send_file(folder / name, as_attachment=True, download_name=Path(name).name)

    @app.errorhandler(403)
    def forbidden(exc: Any) -> Response:
        why = getattr(exc, "description", "not authorised")
        if request.path.startswith("/api/"):
            return refuse(403, why)
        return Response(render_template("error.html", why=why), status=403, mimetype="text/html")

    return app
