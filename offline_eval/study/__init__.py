"""Comparing candidate policies on a log: :class:`~offline_eval.study.study.Study` (estimators,
intervals, reward model, settings search), its results and promotion rule
(:mod:`.results`), plots (:mod:`.plots`) and ``offerbandit eval`` (:mod:`.cli_eval`)."""
