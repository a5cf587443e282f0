"""An emulation of open-source KFP v2's backend (driver, launcher, MLMD, object store) for tests.

Entry point: `devtools.kfp_backend.backend.Backend`; see its docstring.
"""
