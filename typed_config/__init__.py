"""Typed, validated settings: the one pydantic convention every environment's config follows.

Below `components/`, `pipeline/` and `serving/` (stdlib and pydantic only) so that all of them
can declare settings the same way:

    @pydantic.dataclasses.dataclass(frozen=True, config=typed_config.CONFIG)
    class MySettings(typed_config.Settings):
        steps: Annotated[int, Field(ge=1)] = 10

Pydantic dataclasses rather than `BaseModel`: the same validation, plus positional
construction and `dataclasses.replace` (which re-validates), which callers rely on.
"""

import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

import pydantic.dataclasses
import pydantic.fields
import pydantic_core

# Unknown fields are errors; a JSON number is accepted in a text field (2 -> "2"), as before.
CONFIG = pydantic.ConfigDict(extra="forbid", coerce_numbers_to_str=True)

# Words a command line or JSON file uses for "no value" in an optional field.
NULL_WORDS = ("null", "none")

_T = TypeVar("_T")
# Pydantic's message is "Input should be <what>" for most errors; these read better as
# `expected <what>` in a config message.
_COMPARISONS = {
    "greater_than_equal": ">= {ge}",
    "greater_than": "> {gt}",
    "less_than_equal": "<= {le}",
    "less_than": "< {lt}",
    "too_short": "at least {min_length} item(s)",
    "string_too_short": "at least {min_length} character(s)",
}
_UNKNOWN = ("extra_forbidden", "unexpected_keyword_argument")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field.

    Attributes:
      field: Dotted path of the offending field, when one field is at fault.
      detail: What was expected and what was received.
    """

    def __init__(self, message: str, field: str | None = None, detail: str | None = None):
        super().__init__(message)
        self.field = field
        self.detail = detail

    @classmethod
    def for_field(cls, field: str, detail: str) -> "ConfigError":
        """Builds the error for one field: `Invalid config value for 'a.b': <detail>`."""
        return cls(f"Invalid config value for {field!r}: {detail}", field, detail)


def check_field(ok: bool, field: str, expected: str, got: object) -> None:
    """Raises ConfigError naming `field` unless `ok`.

    Inside a validator, `field` is relative to what is being validated: a field of the model
    in a `model_validator` (or a sub-field of the validated field in a `field_validator`), ''
    for the validated field itself. `build` prefixes it with where that sits in the config.
    """
    if not ok:
        raise ConfigError.for_field(field, f"expected {expected}, got {got!r}")


@pydantic.dataclasses.dataclass(frozen=True, config=CONFIG)
class Settings:
    """Base of every settings class: reads text values the way a command line writes them.

    `--set a.b=value` gives every value as a string. Pydantic's lax mode already converts
    text to numbers and booleans; the two conventions it lacks are added here, for every field
    of every subclass: `null`/`none` for an optional field, `a,b,c` for a tuple.
    """

    @pydantic.field_validator("*", mode="before")
    @classmethod
    def _from_text(cls, value: Any, info: pydantic.ValidationInfo) -> Any:
        if not isinstance(value, str) or info.field_name is None:
            return value
        members = _members(_fields(cls)[info.field_name].annotation)
        if type(None) in members and value.strip().lower() in NULL_WORDS:
            return None
        if any(typing.get_origin(member) is tuple for member in members):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value


def _is_union(annotation: object) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _members(annotation: object) -> tuple[object, ...]:
    """`X | None` -> (X, NoneType); `X` -> (X,)."""
    return typing.get_args(annotation) if _is_union(annotation) else (annotation,)


def _fields(cls: object) -> dict[str, pydantic.fields.FieldInfo]:
    """Name to pydantic FieldInfo of a settings class (empty for anything else)."""
    return dict(getattr(cls, "__pydantic_fields__", None) or {})


def _known_fields(root: type, parent: tuple[str, ...]) -> list[str]:
    """Dotted names of the fields of the settings class at `parent` inside `root`."""
    cls: object = root
    for name in parent:
        field = _fields(cls).get(name)
        nested = [m for m in _members(field.annotation) if _fields(m)] if field else []
        if not nested:
            return []
        cls = nested[0]
    return [".".join((*parent, name)) for name in _fields(cls)]


def build(cls: type[_T], values: Mapping[str, object]) -> _T:
    """Builds and validates a settings class from a nested mapping.

    Args:
      cls: A settings class (a pydantic dataclass).
      values: Field values; nested settings as nested mappings.

    Returns:
      The validated instance.

    Raises:
      ConfigError: For unknown fields or invalid values, naming each by its dotted path.
    """
    try:
        return cls(**values)
    except pydantic.ValidationError as e:
        raise config_error(e, cls) from e


def config_error(error: pydantic.ValidationError, root: type | None = None) -> ConfigError:
    """Turns pydantic's errors into one ConfigError naming every field at fault.

    Args:
      error: What pydantic reported while building a settings class.
      root: That class: names positional arguments, lists the known fields next to unknown
        ones.

    Returns:
      The error: `Unknown config field(s) [...]` and/or `Invalid config value for 'a.b':
      expected <what>, got <input>` per field (`; `-separated); `field`/`detail` are those of
      the first invalid value.
    """
    unknown: list[str] = []
    known: list[str] = []
    invalid: list[tuple[str, str]] = []
    names = list(_fields(root))
    for item in error.errors():
        loc = tuple(str(part) for part in item["loc"])
        if loc and isinstance(item["loc"][0], int) and item["loc"][0] < len(names):
            # Built with positional arguments: pydantic names the argument by its index.
            loc = (names[item["loc"][0]], *loc[1:])
        if item["type"] in _UNKNOWN:
            unknown.append(".".join(loc))
            known += _known_fields(root, loc[:-1]) if root else []
        else:
            invalid.append(_field_and_detail(".".join(loc), item))
    messages = [f"Invalid config value for {field!r}: {detail}" for field, detail in invalid]
    if unknown:
        messages.insert(0, f"Unknown config field(s) {unknown}; known: {sorted(set(known))}")
    field, detail = invalid[0] if invalid else (None, None)
    return ConfigError("; ".join(messages), field, detail)


def _field_and_detail(path: str, item: pydantic_core.ErrorDetails) -> tuple[str, str]:
    ctx = item.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, ConfigError) and cause.field is not None and cause.detail:
        # A validator named a field relative to what it validates (see `check_field`).
        return ".".join(p for p in (path, cause.field) if p), cause.detail
    if isinstance(cause, Exception):
        # A field validator says what it expected; the input is what it got.
        return path, f"{cause}, got {item['input']!r}"
    if item["type"] in _COMPARISONS:
        expected = _COMPARISONS[item["type"]].format(**ctx)
    elif item["type"] in ("missing", "missing_argument"):
        return path, "a value is required"
    elif item["msg"].startswith("Input should be "):
        expected = item["msg"].removeprefix("Input should be ")
    else:
        return path, f"{item['msg']}, got {item['input']!r}"
    return path, f"expected {expected}, got {item['input']!r}"
