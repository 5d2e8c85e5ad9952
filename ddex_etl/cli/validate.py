"""``etl validate``: check ERN files against DDEX's XSDs and release-profile rules."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError, ExitCode
from .app import _echo, _example, _print_json, _state


def _xml_files(paths: Sequence[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*.xml") if q.is_file() and not q.name.startswith("BatchComplete_")))
        else:
            out.append(p)
    return out


@click.command(
    short_help="Validate ERN files against DDEX's XSDs and release-profile rules (which you download).",
    epilog=_example(
        "etl validate out/ --schema-dir ~/ddex/schemas",
        "ETL_SCHEMA_DIR=~/ddex/schemas etl validate out/1.xml out/2.xml",
        "etl validate out/ --profile --rules-dir ~/ddex/schematron",
    ),
)
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--schema-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder holding ern/43, ern/42, ern/382 (default: transform.schema_dir / ETL_SCHEMA_DIR).",
)
@click.option(
    "--profile",
    is_flag=True,
    help="Also check DDEX's release-profile rules (what a store checks beyond the XSD); needs --rules-dir.",
)
@click.option(
    "--rules-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder with DDEX's compiled profile rules, ern4/*.xsl and ern382/*.xsl "
    "(default: transform.rules_dir / ETL_RULES_DIR).",
)
@click.option("--max-errors", type=click.IntRange(min=1), default=5, show_default=True, help="Issues shown per file.")
@click.option("--no-progress", is_flag=True, help="No progress bar while checking profile rules.")
@click.option(
    "--json", "as_json", is_flag=True,
    help="Print one JSON object: files, valid, invalid, exit_code and per file its issues.",
)
@click.pass_context
def validate(
    ctx: click.Context,
    paths: tuple[Path, ...],
    schema_dir: Path | None,
    profile: bool,
    rules_dir: Path | None,
    max_errors: int,
    no_progress: bool,
    as_json: bool,
) -> None:
    """Validate ERN documents (files, or folders searched for *.xml).

    The ERN version is read from each document's namespace. Prints the first
    errors of each invalid file with line numbers; exit code 1 if any file
    is invalid. DDEX's XSDs are not shipped: download them from ddex.net
    into a folder with ern/43, ern/42 and ern/382 subfolders.

    With --profile, each file is also checked against DDEX's release-profile
    rules (Schematron compiled to XSLT 2.0, from DDEX's validator; not
    shipped either), chosen by the message's ReleaseProfileVersionId. Fatal
    Error and Error rules make a file fail; the rest are tallied apart, each
    with the reason it does not count (advice; rules written for ERN 4.1
    that test places ERN 4.3 moved; out-of-date or known-defective DDEX
    rules). Without --schema-dir (and no transform.schema_dir),
    --profile checks the rules only.
    """
    from ..ern.validate import validate_paths

    state = _state(ctx)
    state.known.update(command="validate")
    tc = state.config().transform
    if schema_dir is None:
        schema_dir = tc.schema_dir
    if schema_dir is None and not profile:
        raise ConfigError(
            "no schema folder: pass --schema-dir, or set transform.schema_dir in etl.toml or ETL_SCHEMA_DIR; "
            "download the ERN XSDs from https://ddex.net (folders ern/43, ern/42, ern/382)"
        )
    if profile:
        rules_dir = rules_dir or tc.rules_dir
        if rules_dir is None:
            raise ConfigError(
                "no rules folder: pass --rules-dir, or set transform.rules_dir in etl.toml or ETL_RULES_DIR; "
                "it holds DDEX's release-profile rules compiled to XSLT (ern4/Audio.xsl, ern382/AudioAlbumMusicOnly.xsl, ...), "
                "from DDEX's ern-validator"
            )
    elif rules_dir is not None:
        raise ConfigError("--rules-dir needs --profile; fix: add --profile to check DDEX's release-profile rules")
    files = _xml_files(paths)
    if not files:
        raise ConfigError(f"no .xml files found in {', '.join(str(p) for p in paths)}")
    bad: set[Path] = set()
    # --json: per file, what was checked and found (printed once at the end instead of the lines)
    found: dict[Path, dict[str, Any]] = {f: {"path": str(f), "valid": True} for f in files}
    say = (lambda text: None) if as_json else _echo
    if schema_dir is not None:
        reports = validate_paths(files, schema_dir, max_errors=max_errors)
        for r in reports:
            version = f"ERN {r.ern_version}" if r.ern_version else "ERN version unknown"
            found[r.path].update(ern_version=r.ern_version, xsd={
                "valid": r.ok, "issues": [{"line": i.line, "message": i.message} for i in r.issues]})
            if r.ok:
                if state.verbosity > 0 or len(reports) == 1:
                    say(f"{r.path}: valid ({version})")
                continue
            bad.add(r.path)
            say(f"{r.path}: INVALID ({version})")
            for issue in r.issues:
                say(f"  line {issue.line}: {issue.message}")
    if profile:
        assert rules_dir is not None
        if as_json:
            _profile_json(files, rules_dir, bad, found)
        else:
            _profile_check(state, files, rules_dir, max_errors, no_progress, bad)
    code = ExitCode.FAILED if bad else ExitCode.OK
    if as_json:
        for f in bad:
            found[f]["valid"] = False
        _print_json({"files": len(files), "valid": len(files) - len(bad), "invalid": len(bad), "exit_code": code,
                     "results": list(found.values())})
    else:
        _echo(f"{len(files):,} file{'s' if len(files) != 1 else ''}: {len(files) - len(bad):,} valid, "
              f"{len(bad):,} invalid")
    if bad:
        ctx.exit(code)


def _profile_json(files: list[Path], rules_dir: Path, bad: set[Path], found: dict[Path, dict[str, Any]]) -> None:
    """--json: DDEX's profile rules over ``files``, each file's outcome recorded in ``found``; failing ones in ``bad``."""
    from ..ern.profile import check_paths

    for r in check_paths(files, rules_dir):
        found[r.path]["profile"] = {
            "passes": r.ok, "rule_sets": list(r.rule_sets), "error": r.error,
            "failures": [{"role": f.role, "text": f.text, "location": f.location} for f in r.counted],
            "not_counted": sum(not f.counted for f in r.failures),
        }
        if not r.ok:
            bad.add(r.path)


def _profile_check(state: Any, files: list[Path], rules_dir: Path, max_errors: int, no_progress: bool, bad: set[Path]) -> None:
    """Run DDEX's profile rules over ``files``; print each failing file's rules; add them to ``bad``."""
    from collections import Counter

    from ..ern.profile import check_paths
    from ..progress import reporter_for

    # A bar only where it helps: a large folder on a terminal.
    reporter = reporter_for("profile rules", False if no_progress or len(files) < 50 else None, 2.0)
    reporter.start(len(files))
    counts = {"done": 0, "failing": 0}

    def tick(report: Any) -> None:
        counts["done"] += 1
        counts["failing"] += 0 if report.ok else 1
        reporter.update(counts["done"], counts["failing"])

    try:
        reports = check_paths(files, rules_dir, on_file=tick)
    finally:
        reporter.stop()
    advice: Counter[tuple[str, str]] = Counter()
    for r in reports:
        advice.update((f.reason, f.role) for f in r.failures if not f.counted)
        if r.ok:
            if state.verbosity > 0 or len(reports) == 1:
                _echo(f"{r.path}: passes DDEX's profile rules ({', '.join(r.rule_sets)})")
            continue
        bad.add(r.path)
        if r.error:
            _echo(f"{r.path}: NOT CHECKED: {r.error}")
            continue
        failed = r.counted
        _echo(f"{r.path}: FAILS {len(failed)} profile rule{'s' if len(failed) != 1 else ''} ({', '.join(r.rule_sets)})")
        for f in failed[:max_errors]:
            _echo(f"  [{f.role}] {f.text}")
            _echo(f"    at {f.location}")
        if len(failed) > max_errors:
            _echo(f"  ... and {len(failed) - max_errors} more")
    if advice:
        _echo(not_counted_summary(advice))


def not_counted_summary(tally: Mapping[tuple[str, str], int]) -> str:
    """The failures that do not count, grouped by why not: "<n> <role>" per reason, then the reason."""
    from ..ern.profile import NOT_COUNTED

    by_reason: dict[str, list[str]] = {}
    for (reason, role), n in sorted(tally.items()):
        by_reason.setdefault(reason, []).append(f"{n:,} {role}")
    lines = ["not counted (these do not make a file fail):"]
    for reason in sorted(by_reason, key=lambda r: (r == "advice", r)):
        lines.append(f"  {', '.join(by_reason[reason])}: {NOT_COUNTED.get(reason, reason)}")
    return "\n".join(lines)
