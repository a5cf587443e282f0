"""AnomaliesGate policies, defined once for the component, its executor and the config."""

import typing

# `fail` stops the run on any anomaly; `warn` reports them and goes on.
Policy = typing.Literal["fail", "warn"]
FAIL: Policy = "fail"
WARN: Policy = "warn"
POLICIES: tuple[Policy, ...] = typing.get_args(Policy)
