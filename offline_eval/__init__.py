"""offerbandit offline evaluation: batch analytics on decision logs.

=================  ==================================================================
``io``             loading the log (through its reader), exports and imports
``estimators``     off-policy estimators, confidence intervals, reward models
``replay``         candidate policies and progressive replays (VW, uplift)
``study``          comparing policies: ``Study``, results, promotion, ``offerbandit eval``
``uplift``         incremental revenue by slice, ``offerbandit uplift``
``tracking``       every MLflow call
=================  ==================================================================
"""
