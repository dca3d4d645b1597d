"""Candidate policies as target pmfs over a logged bandit (:mod:`.policies`; marketer rule
tables in :mod:`.rules`), and the progressive replays of learners through the log: Vowpal
Wabbit settings (:mod:`.vw_replay`) and the uplift policy (:mod:`.uplift_replay`)."""
