"""The one place for protobuf API differences between the stacks (3.20 on tfx-1.16, 6 on 1.21)."""

import inspect
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

# protobuf 5.26 renamed MessageToDict's `including_default_value_fields` to
# `always_print_fields_with_no_presence` and 6.30 removed the old name; 3.20 has only the old one.
# Both print scalars at their defaults plus empty repeated and map fields, as TF Serving's REST
# status and metadata responses do.
_NEW_ARG = "always_print_fields_with_no_presence"
_PRINT_DEFAULTS_ARG = (
    _NEW_ARG
    if _NEW_ARG in inspect.signature(json_format.MessageToDict).parameters
    else "including_default_value_fields"
)


def message_to_dict_with_defaults(message: Message, **options: Any) -> dict[str, Any]:
    """`json_format.MessageToDict` printing fields at their default values, on either protobuf."""
    return json_format.MessageToDict(message, **{_PRINT_DEFAULTS_ARG: True}, **options)
