"""The ``offerbandit`` command and its tools: the entry point above the adapter and the
offline package (serve, bench, soak, simulate, demo, void, rollback, export, eval, uplift)."""
