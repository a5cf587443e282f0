# Stack selection (docs/stack.md). STACK=tfx-1.21 (primary: TFX 1.21, Python 3.11-3.13, protobuf 6)
# or STACK=tfx-1.16 (compat: TFX 1.16, Python 3.10, end of life since October 2026) forces one for
# every target; unset, scripts/stack.sh picks what this host runs: 1.21 natively where glibc >= 2.39,
# else 1.16 natively, else 1.21 in a Debian 13 root. `make test` runs every stack the host can run.
# Defines STACK, STACKS, STACK_MODE, VENV, RUN (command prefix: empty, or the root's exec), PY, STAMP.
STACK_SH := bash scripts/stack.sh
ifeq ($(origin STACK),undefined)
  STACK := $(shell $(STACK_SH) default)
  STACKS := $(shell $(STACK_SH) all)
else
  STACKS := $(STACK)
  ifeq ($(filter $(STACK),tfx-1.21 tfx-1.16),)
    $(error STACK=$(STACK) is not a stack this project has: use STACK=tfx-1.21 or STACK=tfx-1.16)
  endif
endif
STACK_MODE := $(shell $(STACK_SH) mode $(STACK) 2>/dev/null || echo unknown)

ifeq ($(STACK_MODE),root)
  # The venv lives in the cached Debian 13 root; commands run there with this clone on PYTHONPATH.
  RUN := bash scripts/debian-root.sh exec
  VENV := $(shell bash scripts/debian-root.sh venv)
  STAMP := stack-root
else
  RUN :=
  # .venv stays the compat stack's venv (what existing clones already have).
  VENV := $(if $(filter tfx-1.16,$(STACK)),.venv,.venv-$(STACK))
  STAMP := $(VENV)/.installed
endif
PY := $(RUN) $(VENV)/bin/python

.PHONY: stack stack-root stack-check

## Which stacks this host runs, and how.
stack:
	@$(STACK_SH) explain
	@echo "selected: STACK=$(STACK) ($(STACK_MODE)); make test runs: $(STACKS)"

stack-check:
	@case "$(STACK_MODE)" in native|root) ;; \
	  *) echo "error: stack '$(STACK)' cannot run on this host ($(STACK_MODE)); known: tfx-1.21, tfx-1.16" >&2; \
	     $(STACK_SH) explain >&2; exit 1 ;; esac

$(VENV)/.installed: setup.py constraints/$(STACK).txt scripts/bootstrap-venv.sh scripts/stack.sh | stack-check
	@bash scripts/bootstrap-venv.sh $(STACK) $(VENV)
	@touch $@

# Builds (once, cached outside the clone) the Debian 13 root and the venv inside it.
stack-root: | stack-check
	@bash scripts/debian-root.sh ensure
