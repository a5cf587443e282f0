"""Developer and test tools (not installed, never imported by product folders)."""
