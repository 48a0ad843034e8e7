"""`distill doctor`: read a run folder's metrics.jsonl (and recipe.yaml if present) and rank the
likely causes of a failing GAN / distillation / teacher run, each with a one-line fix and a rerun protocol.
The run's metrics: `run_data`; the rules: `rules.RULES`."""

from __future__ import annotations

from dataclasses import asdict

from .rules import RULES
from .run_data import Finding, RunData, load_run

__all__ = ["diagnose", "load_run", "report_json", "report_text", "rerun_protocol"]


def diagnose(run: RunData) -> list[Finding]:
    """All findings, most likely cause first."""
    found = [f for f in (rule(run) for rule in RULES) if f is not None]
    return sorted(found, key=lambda f: -f.score)


def rerun_protocol(run: RunData, findings: list[Finding]) -> list[str]:
    last_step = max((int(r.get("step", 0)) for r in run.rows), default=0)
    short = max(1, last_step // 4) if last_step else "a quarter of the original"
    if not findings:
        return [f"no failure pattern found; to compare, rerun {run.folder} with another seed and run "
                f"`distill doctor` on both"]
    top = findings[0]
    steps = [
        f"Rerun the same recipe and seed for {short} steps to confirm the failure reproduces "
        f"({top.cause}).",
        f"Apply only fix 1 ({top.fix}); keep every other setting and the seed.",
        f"Rerun for {short} steps, then `distill doctor NEW_RUN`: {top.watch}.",
        "If it is gone, confirm with 2 more seeds at full length; if not, revert and try the next "
        "cause's fix.",
    ]
    return steps


def report_text(run: RunData, findings: list[Finding]) -> str:
    keys = sorted({k for r in run.rows for k in r} - {"step", "time"})
    last_step = run.rows[-1].get("step", len(run.rows))
    lines = [f"run: {run.folder} ({len(run.rows)} rows, last step {last_step}; metrics: {', '.join(keys)})"]
    if run.skipped_lines:
        lines.append(f"note: skipped {run.skipped_lines} unreadable line(s) in metrics.jsonl")
    if findings:
        lines.append("likely causes, most likely first:")
        for i, f in enumerate(findings, 1):
            lines += [f"{i}. [{f.score:.2f}] {f.cause}: {f.evidence}", f"   fix: {f.fix}"]
    else:
        lines.append("no failure pattern found in the logged metrics")
    lines.append("rerun protocol:")
    lines += [f"  {i}. {s}" for i, s in enumerate(rerun_protocol(run, findings), 1)]
    return "\n".join(lines)


def report_json(run: RunData, findings: list[Finding]) -> dict:
    return {"run": str(run.folder), "rows": len(run.rows), "findings": [asdict(f) for f in findings],
            "rerun_protocol": rerun_protocol(run, findings)}
