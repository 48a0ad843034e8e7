"""`distill doctor RUN_FOLDER`: rank the likely causes of a failing run from its metrics.jsonl."""

from __future__ import annotations

import json

from .arguments import check_input_path

HELP = "diagnose a run folder: ranked likely causes (D too strong, collapse, nan...) with fixes"


def add_arguments(p):
    p.add_argument("run_folder", help="run folder holding metrics.jsonl (and recipe.yaml)")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")


def main(args) -> int:
    from ..diagnostics.doctor import diagnose, load_run, report_json, report_text

    check_input_path(args.run_folder, "RUN_FOLDER", "dir")
    run = load_run(args.run_folder)
    findings = diagnose(run)
    print(json.dumps(report_json(run, findings), indent=1) if args.json else report_text(run, findings))
    return 0
