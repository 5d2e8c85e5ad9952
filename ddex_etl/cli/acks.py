"""``etl acks``: read the stores' acknowledgements of delivered batches."""
from __future__ import annotations

from typing import Any

import click

from ..errors import ConfigError, EtlError, ExitCode, printable
from .app import _example, _print_json, _say, _state, _to_stderr
from .run import _check_recipient_names


@click.command(
    short_help="Read the stores' acknowledgements of delivered batches and record them.",
    epilog=_example("etl acks", "etl acks --recipient store-a --json"),
)
@click.option("--recipient", "recipient_names", multiple=True, metavar="NAME", help="Only this recipient (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def acks(ctx: click.Context, recipient_names: tuple[str, ...], as_json: bool) -> None:
    """Read the ACK_*.xml files each recipient's store left beside the messages
    of its newest batches, and record per release whether the store accepted
    or rejected it and why (`etl errors` lists the rejections). Exit code 3
    when a store rejected a release; 1 when a target could not be read.
    """
    from ..delivery.store_acks import read_store_acks
    from ..run import recipients

    state = _state(ctx)
    cfg = state.config()
    _check_recipient_names(cfg, recipient_names)
    chosen = [r for r in recipients.selected(cfg, recipient_names) if r.target is not None]
    if not chosen:
        raise ConfigError("no recipient has a delivery target; fix: set target in a [[recipients]] entry")
    results: list[dict[str, Any]] = []
    codes: list[int] = []
    for r in chosen:
        try:
            summary = read_store_acks(cfg.for_recipient(r))
        except EtlError as exc:
            results.append({"recipient": r.name, "error": str(exc), "error_kind": type(exc).__name__})
            codes.append(exc.exit_code)
            if not as_json:
                _to_stderr(state, f"etl: recipient {r.name}: {exc}")
            continue
        results.append(summary.as_dict())
        codes.append(ExitCode.REJECTED if summary.rejected else ExitCode.OK)
        if not as_json:
            _say(state, f"recipient {r.name} ({summary.target}): {summary.read} acknowledgements in "
                        f"{summary.batches} batches ({summary.new} new; {summary.settled} batches answered in full "
                        f"earlier, not listed; {summary.listings} listings): {summary.accepted} accepted, "
                        f"{len(summary.rejected)} releases rejected" +
                        (f", {len(summary.problems)} unreadable" if summary.problems else ""))
            for a in summary.rejected:
                # Everything after the release id is the store's own text: one line each, whatever it holds.
                _say(state, f"  {printable(a.release or a.message_file)} (release {a.release_id}): "
                            f"{printable(a.status)}: {printable(a.error_text or 'no error text')}")
            for f, why in summary.problems:
                _say(state, f"  unreadable: {printable(f)}: {printable(why)}")
            if summary.pruned:
                _say(state, f"  removed {len(summary.pruned)} old local batches (keep_batches)")
            if summary.kept_unacknowledged:
                _say(state, f"  kept {len(summary.kept_unacknowledged)} old local batches the store has not answered "
                            "for in full (keep_unacknowledged)")
    code = recipients.worst_exit_code(codes)
    if as_json:
        _print_json({"exit_code": code, "recipients": results})
    ctx.exit(code)
