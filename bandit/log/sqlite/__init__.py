"""The decision log on SQLite, one module per concept: the log itself with its connections
and health (:mod:`.store`), the group-commit engine (:mod:`.groupcommit`), decisions and
their catalogues (:mod:`.decisions`), outcome attribution, activation, closing and voiding
(:mod:`.attribution`), statistics (:mod:`.stats`), and the schema with its migrations
(:mod:`.schema`)."""

from bandit.log.sqlite.attribution import AttributionRule, LastTouch
from bandit.log.sqlite.groupcommit import Pending
from bandit.log.sqlite.schema import schema_version_of
from bandit.log.sqlite.store import SqliteDecisionLog

__all__ = ["AttributionRule", "LastTouch", "Pending", "SqliteDecisionLog", "schema_version_of"]
