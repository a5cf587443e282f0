"""The TF Serving contract shared by the Trainer, Pusher, baseline, server and monitor.

Standard library only (like `schemas/`): it sits below `components/` and `serving/`, which both
import it. Filesystem access goes through `FileSystem`, a subset of `tf.io.gfile`'s functions,
so callers pass `tf.io.gfile` (any filesystem TF can read) or `LocalFileSystem()`. Besides the
model directory (`layout`, `model_dir`, `saved_model`), it holds what a request's examples are
(`serving_input`: the context merged into each, as TF Serving feeds them).
"""

from model_contract.filesystem import FileSystem, LocalFileSystem, copy_tree
from model_contract.layout import (
    ASSETS_EXTRA_DIR,
    CLASSIFY_METHOD,
    MANIFEST_FILE,
    MAX_WARMUP_RECORDS,
    PREDICT_METHOD,
    REGRESS_METHOD,
    ROLLED_BACK_PREFIX,
    SAVED_MODEL_FILE,
    SIGNATURE_METHODS,
    STAGING_PREFIX,
    WARMUP_FILE,
    next_version,
    parse_version,
    rolled_back_name,
    staging_name,
    staging_version,
    withdrawn_version,
)
from model_contract.model_dir import (
    ALREADY_SERVING,
    DEFAULT_STAGING_MAX_AGE_S,
    PUSHED,
    PushResult,
    latest_version,
    list_version_dirs,
    list_versions,
    push_version,
    read_manifest,
    remove_stale_staging,
    retire_old_versions,
    roll_back,
)
from model_contract.saved_model import SavedModelMessage, set_method_names

__all__ = [
    "ALREADY_SERVING",
    "ASSETS_EXTRA_DIR",
    "CLASSIFY_METHOD",
    "DEFAULT_STAGING_MAX_AGE_S",
    "MANIFEST_FILE",
    "MAX_WARMUP_RECORDS",
    "PREDICT_METHOD",
    "PUSHED",
    "REGRESS_METHOD",
    "ROLLED_BACK_PREFIX",
    "SAVED_MODEL_FILE",
    "SIGNATURE_METHODS",
    "STAGING_PREFIX",
    "WARMUP_FILE",
    "FileSystem",
    "LocalFileSystem",
    "PushResult",
    "SavedModelMessage",
    "copy_tree",
    "latest_version",
    "list_version_dirs",
    "list_versions",
    "next_version",
    "parse_version",
    "push_version",
    "read_manifest",
    "remove_stale_staging",
    "retire_old_versions",
    "roll_back",
    "rolled_back_name",
    "set_method_names",
    "staging_name",
    "staging_version",
    "withdrawn_version",
]
