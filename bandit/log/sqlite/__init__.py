"""The decision log on SQLite: the schema and its migrations (:mod:`.schema`), and the log
with its group-commit writer (:mod:`.store`)."""

from bandit.log.sqlite.schema import schema_version_of
from bandit.log.sqlite.store import AttributionRule, LastTouch, Pending, SqliteDecisionLog

__all__ = ["AttributionRule", "LastTouch", "Pending", "SqliteDecisionLog", "schema_version_of"]
