"""Logs in and out: loading the decision log into columns (:mod:`.logs`, through the log's
reader), exports to Parquet / CSV / VW DSJson and imports of them and of other systems' logs
(:mod:`.export`, :mod:`.dsjson`), and ``offerbandit export`` (:mod:`.cli_export`)."""
