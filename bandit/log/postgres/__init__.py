"""The decision log on PostgreSQL, one module per concept as on SQLite: the log with its
connections and group commit (:mod:`.store`), decisions and catalogues (:mod:`.decisions`),
attribution, activation, closing and voiding (:mod:`.attribution`), contact policies' reads
and holds (:mod:`.contacts`), statistics (:mod:`.stats`), the versioned migrations
(:mod:`.schema`), the offline reader (:mod:`.reader`) and the trainer's lease
(:mod:`.lease`). Selected by ``log = "postgresql://…"`` (docs/scale-out.md)."""

from bandit.log.postgres.store import PostgresDecisionLog, connect

__all__ = ["PostgresDecisionLog", "connect"]
