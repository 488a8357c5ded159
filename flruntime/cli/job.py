"""``flruntime job ...``: job templates, creating jobs from them, listing a job's variables, converting NVFlare jobs."""

from __future__ import annotations

import argparse
from typing import Any

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

    v = sub.add_parser("convert", help="copy an NVFlare job folder with flruntime's class paths in place of NVFlare's")
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
