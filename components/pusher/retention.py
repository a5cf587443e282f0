"""The Pusher's retention setting, its key and bound written once (light: no TFX, no TF)."""

from collections.abc import Mapping
from typing import Any

# custom_config key: how many of the newest versions to keep after a push (None: keep all).
KEEP_VERSIONS_KEY = "keep_versions"
# The served version plus one to go back to: `rollback` needs an older version on disk.
MIN_KEEP_VERSIONS = 2


def keep_versions_of(custom_config: Mapping[str, Any] | None) -> int | None:
    """Returns custom_config's retention: versions to keep after a push, None to keep all.

    Raises:
      ValueError: If `keep_versions` is not an integer >= MIN_KEEP_VERSIONS, saying what to set.
    """
    keep = dict(custom_config or {}).get(KEEP_VERSIONS_KEY)
    if keep is None:
        return None
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < MIN_KEEP_VERSIONS:
        raise ValueError(
            f"custom_config['{KEEP_VERSIONS_KEY}'] must be an integer >= {MIN_KEEP_VERSIONS} "
            "(the newest versions to keep; the served one is always kept, and rollback needs "
            f"one more) or left out to keep every version; got {keep!r}."
        )
    return keep
