"""Deals: territories, commercial models and use types mapped per ERN version, dates, prices, and sanity warnings.

Each deal needs territories, a commercial model, use types and a start date
(the release date is used when the deal has none); the end may not precede
the start. Deals that start before the release date, deals that overlap
another deal with the same commercial model, use type and territory, and a
subscription deal granting permanent downloads are warned about
(``Document.warnings``), not rejected. Deals are listed in deal-id order.

Where a deal goes: streaming use types (and a subscription or ad-supported
service's tethered downloads) are linked to the track releases only, never
to the main release: DDEX's guidance is that an album is not streamed (ERN 4
Part 1, 6.14.2; its own ``1 Audio.xml`` sample does so) and stores such as
YouTube read streaming deals from track releases only. Everything else
(downloads) is linked to the main release and the track releases. A deal
granting both is written as two deals, one per scope (``PDeal.tracks_only``).

ERN 3.8.2's business profiles forbid a generic use type beside specific ones
of its kind (rules 2272-2 and siblings), and name services by specific ones:
there ``Stream`` is written as ``OnDemandStream`` and ``NonInteractiveStream``,
and ``Download`` listed beside specific downloads as ``PermanentDownload``
and ``ConditionalDownload``.

A price (``price_code``, or ``wholesale_price`` with ``currency``) is sent on
the download part of a deal only: streaming is paid per the store's contract,
not per unit.
"""
from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

from ...models import Release
from ..prepared import PDeal, Prepared
from .checker import CACHE_LIMIT, ISO_DATES, Checker
from .vocabulary import Vocabulary

# Use types of a streaming service: linked to track releases only.
STREAMING = frozenset({
    "Stream", "OnDemandStream", "NonInteractiveStream", "ContentInfluencedStream", "TimeInfluencedStream",
    "Simulcast", "Webcast",
})
# Downloads that live only inside a subscription or ad-supported streaming
# service (offline listening): linked like the streams they come with.
_TETHERED = frozenset({"ConditionalDownload", "TetheredDownload"})
_SERVICE_MODELS = frozenset({"SubscriptionModel", "AdvertisementSupportedModel"})
# ERN 3.8.2: the generic Stream, as the specific use types its business profiles name.
_STREAM_382 = ("OnDemandStream", "NonInteractiveStream")
# ... and the generic Download, where a deal lists it beside specific downloads.
_DOWNLOAD_382 = ("PermanentDownload", "ConditionalDownload")
_DOWNLOADS = frozenset({"PermanentDownload", "Download", "ConditionalDownload", "TetheredDownload", "KioskDownload"})
_CURRENCY = re.compile(r"[A-Z]{3}")
_PRICE = re.compile(r"[0-9]{1,9}(\.[0-9]{1,4})?")

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
        price = _price(ck, d, where) if (d.price_code is not None or d.wholesale_price is not None or d.currency is not None) else None
        model = models[0] if models else ""
        streams = [u for u in uses if u in STREAMING or (u in _TETHERED and model in _SERVICE_MODELS)]
        if not streams:
            rest = uses
        elif len(streams) == len(uses):
            rest = []
        else:  # one deal granting both: a download part for every release, a streaming part for the tracks
            rest = [u for u in uses if u not in streams]
        if price is not None and not any(u in _DOWNLOADS for u in rest):
            ck.warnings.append(
                f"release {ck.release_id}: deal {d.deal_id} has a price but grants no download; the price is not sent "
                "(streams are paid per the store's contract); fix: clear the deal's price columns"
            )
            price = None
        if rest or not uses:
            p.deals.append(PDeal(d.deal_id, terrs, models, rest, start, end, False, *(price or (None, None, None))))
        if streams:
            p.deals.append(PDeal(d.deal_id, terrs, models, streams, start, end, True))

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
        if found == "Stream" and voc.version == "3.8.2":
            for specific in _STREAM_382:
                if specific not in uses:
                    uses.append(specific)
        elif found and found not in uses:
            uses.append(found)
    if voc.version == "3.8.2" and "Download" in uses and any(u != "Download" and u.endswith("Download") for u in uses):
        # The generic Download beside specific ones: written as the downloads it stands for.
        at = uses.index("Download")
        uses[at:at + 1] = [u for u in _DOWNLOAD_382 if u not in uses]
    return terrs, [model] if model else [], uses


def _price(ck: Checker, d: Any, where: str) -> tuple[str | None, str | None, str | None] | None:
    """(price tier code, wholesale price, currency) of a deal, or None (no price, or a bad one: a problem)."""
    code = ck.text(f"{where}.price_code", d.price_code)
    amount = d.wholesale_price
    currency = ck.text(f"{where}.currency", d.currency)
    text = None
    if amount is not None:
        if isinstance(amount, (int, float, Decimal, str)) and not isinstance(amount, bool):
            raw = str(amount).strip()
            if _PRICE.fullmatch(raw):  # plain digits only: no exponent, sign, NaN or infinity
                text = format(Decimal(raw).normalize(), "f")
        if not text or not _PRICE.fullmatch(text) or Decimal(text) <= 0:
            ck.problem(f"{where}.wholesale_price", amount, f"deal {d.deal_id}: is not a positive price (up to 4 decimals)", "set deals.wholesale_price to e.g. 0.69, or leave it empty")
            return None
        if currency is None or not _CURRENCY.fullmatch(currency):
            ck.problem(f"{where}.currency", d.currency, f"deal {d.deal_id}: a wholesale price needs an ISO 4217 currency", "set deals.currency to e.g. EUR, USD or GBP")
            return None
    elif currency is not None and code is None:
        ck.warnings.append(f"release {ck.release_id}: deal {d.deal_id} has a currency ({currency}) but no price; fix: set deals.wholesale_price, or clear deals.currency")
    if code is None and text is None:
        return None
    return code, text, currency if text is not None else None


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
    for d in p.deals:
        if "SubscriptionModel" in d.models and "PermanentDownload" in d.use_types:
            ck.warnings.append(
                f"release {rid}: deal {d.deal_id} grants PermanentDownload under SubscriptionModel: a subscription service "
                "lends tracks (streams, tethered downloads), it does not sell them; fix: use ConditionalDownload, or a "
                "PayAsYouGoModel deal for permanent downloads"
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
