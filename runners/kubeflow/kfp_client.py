"""The one place that calls the kfp SDK Client's private API: the UI address of a run.

`kfp.Client` knows the UI's address (its `ui_host`, or `/pipeline` inside the cluster) but
offers it only as `_get_url_prefix()` (sdk/python/kfp/client/client.py, identical from kfp
2.5.0 to 2.16.1). `tests/runners/test_private_adapters.py` pins it to `TESTED_KFP_VERSIONS`.
"""

from typing import Any

# kfp SDK releases whose `Client._get_url_prefix` this module was checked against.
TESTED_KFP_VERSIONS = ("2.5.0", "2.14.6", "2.15.2", "2.16.1", "2.17.3")


def ui_url(client: Any, path: str) -> str:
    """The KFP UI address of `path` (e.g. `#/runs/details/<id>`) for this client."""
    return f"{client._get_url_prefix()}/{path}"
