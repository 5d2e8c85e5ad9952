"""Deals: territories, commercial models and use types mapped per ERN version, dates, and sanity warnings.

Each deal needs territories, a commercial model, use types and a start date
(the release date is used when the deal has none); the end may not precede
the start. Deals that start before the release date, and deals that overlap
another deal with the same commercial model, use type and territory, are
warned about (``Document.warnings``), not rejected. Deals are listed in
deal-id order.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from ...models import Release
from ..prepared import PDeal, Prepared
from .checker import CACHE_LIMIT, ISO_DATES, Checker
from .vocabulary import Vocabulary

# Deal terms recur across a catalog; clean results are memoised per process
# (pure functions of their key and the ERN version).
_DEAL_TERMS: dict[Any, tuple[list[str], list[str], list[str]]] = {}


def check_deals(ck: Checker, voc: Vocabulary, release: Release, p: Prepared, need_deals: bool) -> None:
    """Check and map the release's deals onto ``p.deals``; ``need_deals``: a release without one is a problem."""
    if need_deals and not release.deals:
        ck.problem("deals", (), "the release has no deals", "add at least one deal (territories, commercial model, use types), or send a takedown")
    deals_in = release.deals
    for i, d in sorted(enumerate(deals_in), key=_deal_order) if len(deals_in) > 1 else enumerate(deals_in):
        where = f"deals[{i}]"
        try:
            terms_key: Any = (voc.version, d.territories, d.commercial_model, d.use_types)
            terms = _DEAL_TERMS.get(terms_key)
        except TypeError:  # unhashable junk
            terms_key, terms = None, None
        if terms is None:
            before = (len(ck.problems), len(ck.warnings))
            terms = _deal_terms(ck, voc, d, where)
            if terms_key is not None and (len(ck.problems), len(ck.warnings)) == before and len(_DEAL_TERMS) < CACHE_LIMIT:
                _DEAL_TERMS[terms_key] = terms  # clean terms only: the shared lists are never mutated
        terrs, models, uses = terms
        start = ISO_DATES.get(d.start_date) if type(d.start_date) is dt.date else None
        if start is None:
            start = ck.date(f"{where}.start_date", d.start_date)
        end = None if d.end_date is None else ck.date(f"{where}.end_date", d.end_date)
        if start is None and d.start_date is None:
            start = p.release_date
            if start is None:
                ck.problem(f"{where}.start_date", None, f"deal {d.deal_id} has no start date and the release has no release date", "set deals.start_date or releases.release_date")
        if start and end and end < start:
            ck.problem(f"{where}.end_date", d.end_date, f"deal {d.deal_id} ends before it starts ({start})", "correct deals.end_date or deals.start_date")
        p.deals.append(PDeal(d.deal_id, terrs, models, uses, start, end))

    if p.deals:
        _deal_sanity(ck, p)


def _deal_order(item: tuple[int, Any]) -> tuple[str, int]:
    """Deals in deal-id order (as text, so any id type sorts), then input order."""
    return (str(item[1].deal_id), item[0])


def _deal_terms(ck: Checker, voc: Vocabulary, d: Any, where: str) -> tuple[list[str], list[str], list[str]]:
    """Territories, commercial models and use types of one deal, mapped to the version's values."""
    terrs: list[str] = []
    raw_terr = d.territories if isinstance(d.territories, (list, tuple)) else ()
    if not raw_terr:
        ck.problem(f"{where}.territories", d.territories, f"deal {d.deal_id} has no territories", "list ISO 3166 codes such as GB, US, or 'Worldwide'")
    for j, code in enumerate(raw_terr):
        found = voc.territories.get(code) if type(code) is str else None
        if found is None:
            found = ck.choice(f"{where}.territories[{j}]", code, voc.territories, "territory code (ISO 3166-1 or Worldwide)")
        if found and found not in terrs:
            terrs.append(found)
    if "Worldwide" in terrs:
        terrs = ["Worldwide"]
    else:
        terrs.sort()
    model = None
    if d.commercial_model is None:
        ck.problem(f"{where}.commercial_model", None, f"deal {d.deal_id} has no commercial model", "set deals.commercial_model, e.g. SubscriptionModel")
    else:
        model = voc.commercial_models.get(d.commercial_model) if type(d.commercial_model) is str else None
        if model is None:
            model = ck.choice(f"{where}.commercial_model", d.commercial_model, voc.commercial_models, "commercial model")
    uses: list[str] = []
    raw_uses = d.use_types if isinstance(d.use_types, (list, tuple)) else ()
    if not raw_uses:
        ck.problem(f"{where}.use_types", d.use_types, f"deal {d.deal_id} has no use types", "list use types such as Stream, PermanentDownload")
    for j, u in enumerate(raw_uses):
        found = voc.use_types.get(u) if type(u) is str else None
        if found is None:
            found = ck.choice(f"{where}.use_types[{j}]", u, voc.use_types, "use type")
        if found and found not in uses:
            uses.append(found)
    return terrs, [model] if model else [], uses


def _deal_sanity(ck: Checker, p: Prepared) -> None:
    """Warn (not reject) about deals a store would likely question.

    A deal that starts before the release date puts the release on sale early
    (the catalog has no pre-order deals: a pre-order would say so). A generic
    use type (Stream, Download) beside specific ones is ambiguous. Two deals
    that overlap in time for the same commercial model, use type and territory
    say the same thing twice, or contradict each other on dates. DDEX dates
    are inclusive: a deal ending on a day overlaps one starting that day.
    """
    rid = p.release_id
    if p.release_date:
        for d in p.deals:
            if d.start and d.start < p.release_date:
                ck.warnings.append(
                    f"release {rid}: deal {d.deal_id} starts {d.start}, before the release date {p.release_date}, "
                    "and is not a pre-order: the release goes on sale early; fix: start the deal on the release date"
                )
    uses = {u for d in p.deals for u in d.use_types}
    for generic in ("Stream", "Download"):
        specific = sorted(u for u in uses if u != generic and u.endswith(generic))
        if generic in uses and specific:
            ck.warnings.append(
                f"release {rid}: its deals grant the generic use type {generic} beside the specific {', '.join(specific)}: "
                f"stores read that as ambiguous (ERN 3's business profiles forbid it); fix: list the specific use types only"
            )
    deals = p.deals
    for a_i in range(len(deals)):
        a = deals[a_i]
        for b in deals[a_i + 1:]:
            if not set(a.models) & set(b.models) or not set(a.use_types) & set(b.use_types):
                continue
            if "Worldwide" in a.territories:  # mapped deals say Worldwide alone, or list countries
                shared = list(b.territories)
            elif "Worldwide" in b.territories:
                shared = list(a.territories)
            else:
                shared = sorted(set(a.territories) & set(b.territories))
            if not shared:
                continue
            # Inclusive ranges [start, end]; an open end runs forever.
            if (a.end is None or b.start is None or b.start <= a.end) and (b.end is None or a.start is None or a.start <= b.end):
                common = ", ".join(sorted(set(a.use_types) & set(b.use_types)))
                ck.warnings.append(
                    f"release {rid}: deals {a.deal_id} and {b.deal_id} overlap for {common} in {', '.join(shared[:5])}"
                    f"{' ...' if len(shared) > 5 else ''} with the same commercial model; fix: end one before the other starts, or merge them"
                )
