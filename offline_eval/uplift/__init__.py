"""Incremental net revenue against control, by segment × trigger × offer × channel
(:mod:`.analysis`), its report (:mod:`.report`), plots (:mod:`.plots`) and ``offerbandit
uplift`` (:mod:`.cli_uplift`)."""
