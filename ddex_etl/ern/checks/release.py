"""Release fields: what the message says about the release itself."""
from __future__ import annotations

import datetime as dt
import operator

from ...models import Release

_UPDATED = operator.attrgetter("updated_at")


def latest_change(release: Release) -> dt.datetime | None:
    """The latest updated_at over the release, its tracks and its deals."""
    stamps = [s for s in (release.updated_at, *map(_UPDATED, release.tracks), *map(_UPDATED, release.deals)) if isinstance(s, dt.datetime)]
    if not stamps:
        return None
    try:  # all aware (or all naive): datetimes compare across time zones directly
        return max(stamps)
    except TypeError:  # a mix of naive and aware: naive ones are UTC
        return max(stamps, key=lambda s: s if s.tzinfo is not None else s.replace(tzinfo=dt.timezone.utc))
