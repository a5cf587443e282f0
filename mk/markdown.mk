# markdown-to-jsx at the versions the KFP UI pins (2.15 and 2.17 frontends), for the tests that
# render every Markdown report as the UI does. `npm ci` installs exactly the lock files.
MARKDOWN_RENDER := devtools/markdown_render
MARKDOWN_FRONTENDS := kfp-2.15 kfp-2.17
MARKDOWN_STAMPS := $(foreach f,$(MARKDOWN_FRONTENDS),$(MARKDOWN_RENDER)/$(f)/node_modules/.package-lock.json)

.PHONY: markdown-render
## Install the pinned Markdown renderers (node_modules, gitignored) the report tests use.
markdown-render: $(MARKDOWN_STAMPS)

$(MARKDOWN_RENDER)/%/node_modules/.package-lock.json: $(MARKDOWN_RENDER)/%/package-lock.json $(MARKDOWN_RENDER)/%/package.json
	cd $(MARKDOWN_RENDER)/$* && npm ci --no-audit --no-fund
	@touch $@

test test-stack test-fast: markdown-render
