"""``flruntime job ...``: templates, creating and converting job folders, and submitting them to a server."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from flruntime.cli import build
from flruntime.cli.common import add_override_option, overrides_of
from flruntime.exit_codes import ExitCode


def register(verbs: Any) -> None:
    """Add the ``job`` verb group."""
    p = verbs.add_parser("job", help="job templates and job folders")
    sub = p.add_subparsers(dest="job_verb", metavar="COMMAND", parser_class=type(p))
    sub.required = True

    t = sub.add_parser("templates", help="list the job templates")
    t.add_argument("-d", "--template-dir", help="a folder of templates (default: the built-in ones)")
    t.set_defaults(func=_templates)

    c = sub.add_parser("create", help="create a job folder from a template")
    c.add_argument("-t", "--template", required=True, help="template name (see 'flruntime job templates') or folder")
    c.add_argument("-w", "--workdir", "-j", dest="workdir", required=True, help="the job folder to create")
    c.add_argument("-d", "--template-dir", help="a folder of templates (default: the built-in ones)")
    c.add_argument("--force", action="store_true", help="overwrite an existing job folder")
    add_override_option(c)
    c.set_defaults(func=_create)

    s = sub.add_parser(
        "show-variables", aliases=["show_variables"], help="list a job's variables and where they are used"
    )
    s.add_argument("job_dir", metavar="JOB_DIR")
    s.set_defaults(func=_show)

    v = sub.add_parser(
        "convert",
        help="copy an NVFlare job folder with flruntime's class paths in place of NVFlare's",
        description="Copy JOB_DIR to OUT with flruntime's class paths in place of NVFlare's. A folder in NVFlare's "
        "legacy job format (config/ at the top, no meta file) is wrapped into a job: app OUT/<name>, OUT/meta.json.",
    )
    v.add_argument("job_dir", metavar="JOB_DIR")
    v.add_argument("-o", "--output", required=True, metavar="OUT", help="the converted job folder to create")
    v.add_argument("--force", action="store_true", help="replace OUT if it exists")
    v.set_defaults(func=_convert)

    a = sub.add_parser("add-tracking", help="add an MLflow / TensorBoard / W&B receiver to a job folder")
    a.add_argument("job_dir", metavar="JOB_DIR")
    a.add_argument("--type", dest="tracking_type", choices=("mlflow", "tensorboard", "wandb"), default="mlflow")
    a.add_argument("--client-side", action="store_true", help="also record on each site, in the site's own store")
    a.add_argument("--no-server-side", action="store_true", help="do not record on the server")
    add_override_option(a)
    a.set_defaults(func=_add_tracking)

    _register_remote(sub)
    build.register_export(sub)


def _kit_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kit",
        metavar="ADMIN_KIT",
        help="an admin's startup kit (default: $FLRUNTIME_ADMIN_KIT, else the POC workspace's admin)",
    )


def _register_remote(sub: Any) -> None:
    """The verbs that talk to a running server with an admin's kit."""
    s = sub.add_parser("submit", help="check a job folder (or a package: verified, exported) and submit it")
    s.add_argument("-j", "--job", "--job-folder", dest="job_dir", required=True, metavar="JOB_DIR_OR_PACKAGE")
    s.add_argument("--wait", action="store_true", help="wait until it finished; exit 3 unless it completed")
    s.add_argument("--timeout", type=float, default=None, metavar="S", help="with --wait: give up after S seconds")
    _kit_option(s)
    s.set_defaults(func=_submit)

    ls = sub.add_parser("list", help="list the server's jobs")
    ls.add_argument("--json", action="store_true", help="print the records as JSON")
    _kit_option(ls)
    ls.set_defaults(func=_list)

    ab = sub.add_parser("abort", help="abort a submitted or running job")
    ab.add_argument("job_id", metavar="JOB_ID")
    _kit_option(ab)
    ab.set_defaults(func=_abort)

    lg = sub.add_parser("logs", help="print a job's log on the server or a site")
    lg.add_argument("job_id", metavar="JOB_ID")
    lg.add_argument("--site", default="server", help="server (default) or a client's name")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until the job finished")
    _kit_option(lg)
    lg.set_defaults(func=_logs)

    dl = sub.add_parser("download", help="download a job's server workspace (models, results, log)")
    dl.add_argument("job_id", metavar="JOB_ID")
    dl.add_argument("-o", "--output", default=None, metavar="DIR", help="where (default: the kit's transfer/)")
    _kit_option(dl)
    dl.set_defaults(func=_download)


def _admin_kit(args: argparse.Namespace) -> Path:
    import os

    from flruntime.errors import UsageError

    if args.kit:
        return Path(args.kit)
    if os.environ.get("FLRUNTIME_ADMIN_KIT"):
        return Path(os.environ["FLRUNTIME_ADMIN_KIT"])
    from flruntime.provision.poc import default_workspace, load

    try:
        admins = load(default_workspace()).admins
    except UsageError:
        admins = []
    if not admins:
        raise UsageError("no admin kit: pass --kit ADMIN_KIT (or set FLRUNTIME_ADMIN_KIT, or prepare a POC)")
    return admins[0].kit


def _session(args: argparse.Namespace) -> Any:
    from flruntime.federation import AdminSession

    return AdminSession(_admin_kit(args))


def _submit(args: argparse.Namespace) -> int:
    with _session(args) as session:
        job_id = session.submit(args.job_dir)
        print(f"submitted job {job_id}")
        if not args.wait:
            return int(ExitCode.OK)
        rec = session.wait(job_id, timeout=args.timeout)
    print(f"job {job_id}: {rec['status']}" + (f" ({rec['error']})" if rec.get("error") else ""))
    return int(ExitCode.OK if rec["status"] == "FINISHED:COMPLETED" else ExitCode.JOB_FAILED)


def _list(args: argparse.Namespace) -> int:
    import json
    import time

    with _session(args) as session:
        jobs = session.list_jobs()
    if args.json:
        print(json.dumps(jobs, indent=2))
        return int(ExitCode.OK)
    rows = [["JOB ID", "NAME", "STATUS", "SUBMIT TIME", "RUN DURATION"]]
    for rec in jobs:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(rec["submit_time"]))
        took = "" if rec.get("duration") is None else f"{rec['duration']:.1f} s"
        rows.append([rec["job_id"], rec["name"], rec["status"], when, took])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return int(ExitCode.OK)


def _abort(args: argparse.Namespace) -> int:
    with _session(args) as session:
        session.abort(args.job_id)
    print(f"abort of job {args.job_id} requested")
    return int(ExitCode.OK)


def _logs(args: argparse.Namespace) -> int:
    import sys
    import time

    offset = 0
    with _session(args) as session:
        while True:
            text, offset = session.logs(args.job_id, args.site, offset)
            sys.stdout.write(text)
            sys.stdout.flush()
            if not args.follow:
                break
            if not text:
                if session.job(args.job_id)["status"].startswith("FINISHED:"):
                    break
                time.sleep(1.0)
    return int(ExitCode.OK)


def _download(args: argparse.Namespace) -> int:
    with _session(args) as session:
        dest = Path(args.output) if args.output else session.kit.root / "transfer"
        folder = session.download(args.job_id, dest)
    print(f"downloaded job {args.job_id} to {folder}")
    return int(ExitCode.OK)


def _templates(args: argparse.Namespace) -> int:
    from flruntime.templates import list_templates

    templates = list_templates(args.template_dir)
    headers = ["NAME", "DESCRIPTION"]
    rows = [[t.name, t.description] for t in templates]
    if any(t.controller_type or t.execution_api_type for t in templates):  # NVFlare's info.conf columns
        headers += ["CONTROLLER TYPE", "EXECUTION API TYPE"]
        for row, t in zip(rows, templates, strict=True):
            row += [t.controller_type or "NA", t.execution_api_type or "NA"]
    table = [headers, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers) - 1)]
    for row in table:
        print("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]).rstrip())
    return int(ExitCode.OK)


def _create(args: argparse.Namespace) -> int:
    from flruntime.templates import create_job

    created = create_job(
        args.template, args.workdir, overrides=overrides_of(args), template_dir=args.template_dir, force=args.force
    )
    print(f"created job folder {created}")
    return _print_variables(str(created))


def _add_tracking(args: argparse.Namespace) -> int:
    from flruntime.tracking.add import add_experiment_tracking
    from flruntime.validation import validate_job

    job = add_experiment_tracking(
        args.job_dir,
        args.tracking_type,
        overrides_of(args),
        client_side=args.client_side,
        server_side=not args.no_server_side,
    )
    report = validate_job(job)
    for problem in report.problems:
        print(problem.format())
    print(f"added {args.tracking_type} tracking to {job}" + ("" if report.valid else " (the job has problems)"))
    return int(ExitCode.OK if report.valid else ExitCode.INVALID_JOB)


def _convert(args: argparse.Namespace) -> int:
    from flruntime.convert import convert_job

    report = convert_job(args.job_dir, args.output, force=args.force)
    if report.wrapped is not None:
        print(
            f"wrapped the legacy app {report.source} as app '{report.wrapped}' of the job {report.output} "
            f"(meta.json: deploy_map {{{report.wrapped}: [@ALL]}}, min_clients 1)"
        )
    files = len({r.file for r in report.rewrites})
    print(f"rewrote {len(report.rewrites)} NVFlare class path(s) in {files} file(s) of {report.output}")
    for rewrite in report.rewrites:
        print(f"  {rewrite.format()}")
    if report.unsupported:
        print(f"not supported yet, left as they are ({len(report.unsupported)}):")
        for problem in report.unsupported:
            print(f"  {problem.format()}")
    converted = report.converted.problems if report.converted else []
    others = [p for p in converted if p.code != "unsupported"]
    if others:
        print(f"other problems ({len(others)}):")
        for problem in others:
            print(f"  {problem.format()}")
    valid = report.converted is not None and report.converted.valid
    same = "the same problems as" if report.same_validation else "DIFFERENT problems from"
    print(f"{report.output}: {'valid' if valid else 'not valid'}; it has {same} {report.source}")
    return int(ExitCode.OK if valid else ExitCode.INVALID_JOB)


def _show(args: argparse.Namespace) -> int:
    return _print_variables(args.job_dir)


def _print_variables(job_dir: str) -> int:
    from flruntime.templates import job_variables

    rows = job_variables(job_dir)
    headers = ("VARIABLE", "VALUE", "DEFINED IN", "USED AT")
    table = [headers] + [(r.name, r.value, r.origin, r.used_at) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for row in table:
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}".rstrip())
    return int(ExitCode.OK)
