"""The settings base every environment's config builds on: text conventions and error paths."""

import dataclasses
from typing import Annotated

import pydantic.dataclasses
import pytest
from pydantic import Field

import typed_config
from typed_config import CONFIG, ConfigError, Settings, build, check_field


@pydantic.dataclasses.dataclass(frozen=True, config=CONFIG)
class _Pool(Settings):
    size: Annotated[int, Field(ge=1)] = 1
    labels: tuple[str, ...] = ()
    kind: str = ""

    @pydantic.model_validator(mode="after")
    def _check_kind(self) -> "_Pool":
        check_field(bool(self.kind) or self.size == 1, "kind", "set when size > 1", self.kind)
        return self


@pydantic.dataclasses.dataclass(frozen=True, config=CONFIG)
class _Root(Settings):
    name: str
    limit: float | None = 2.0
    pool: _Pool | None = None
    pools: tuple[_Pool, ...] = ()


def test_text_values_take_the_field_types() -> None:
    root = build(_Root, {"name": "r", "limit": "none", "pool": {"size": "3", "kind": "k"}})
    assert root == _Root("r", None, _Pool(3, (), "k"))
    assert build(_Root, {"name": "null"}).name == "null"  # not optional: the word stays
    assert build(_Root, {"name": "r", "pool": {"labels": "a, b,,c"}}).pool == _Pool(
        labels=("a", "b", "c")
    )


def test_errors_name_the_dotted_path() -> None:
    with pytest.raises(ConfigError) as error:
        build(_Root, {"name": "r", "pools": [{}, {"size": 2}], "pool": {"size": 0}})
    assert str(error.value) == (
        "Invalid config value for 'pool.size': expected >= 1, got 0; "
        "Invalid config value for 'pools.1.kind': expected set when size > 1, got ''"
    )
    assert (error.value.field, error.value.detail) == ("pool.size", "expected >= 1, got 0")
    with pytest.raises(ConfigError, match="Invalid config value for 'name': a value is required"):
        build(_Root, {})


def test_unknown_fields_are_listed_with_the_known_ones() -> None:
    with pytest.raises(ConfigError) as error:
        build(_Root, {"name": "r", "pool": {"sise": 2}})
    assert str(error.value) == (
        "Unknown config field(s) ['pool.sise']; known: ['pool.kind', 'pool.labels', 'pool.size']"
    )
    assert error.value.field is None


def test_construction_validates_and_stays_frozen() -> None:
    pool = _Pool(2, kind="k")
    with pytest.raises(pydantic.ValidationError):
        dataclasses.replace(pool, kind="")
    with pytest.raises(dataclasses.FrozenInstanceError):
        pool.size = 3  # type: ignore[misc]
    error = typed_config.config_error(_validation_error(lambda: _Pool(0)), _Pool)
    assert str(error) == "Invalid config value for 'size': expected >= 1, got 0"


def _validation_error(make: object) -> pydantic.ValidationError:
    try:
        make()  # type: ignore[operator]
    except pydantic.ValidationError as e:
        return e
    raise AssertionError("no validation error")
