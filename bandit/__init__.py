"""offerbandit domain core.

Types, VW examples, learner, sampling, eligibility, decision log, attribution, rewards.
"""
