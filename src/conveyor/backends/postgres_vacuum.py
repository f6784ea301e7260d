"""What a process reads of a schema as it opens the store, in one statement: its
version, its identity, the role's missing rights (``Backend.check_rights``), and
whether vacuum can keep its jobs table small, told once per process if not, by the
long-running processes as they start (``Backend.warn_about_setup``).

Every claim and every outcome leaves a dead row version behind; only vacuum removes
them and their index entries. With autovacuum off (server-wide, or for the jobs
table) nothing does unless someone runs ``VACUUM``: the table and its indexes grow
with every job and each claim from the front of the ready index reads more of them
(a churn run on a server with autovacuum off, 13,280 jobs/s: that scan read 566
buffers in 4 ms after 5 s, 8,029 in 11 ms after 60 s, and kept growing).
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from psycopg import sql

logger = logging.getLogger("conveyor.backends.postgres")

#: Warnings already given, per store address and schema (once per process).
_WARNED: set[tuple[str, str]] = set()


class SchemaState(NamedTuple):
    version: int  # 0: no conveyor schema there
    autovacuum: bool  # the server's autovacuum setting
    table_autovacuum: bool  # the jobs table's own autovacuum_enabled (default on)
    #: which schema this is: the database's name as the server knows it, and when the
    #: schema's first version was applied (two databases, through whatever hosts,
    #: ports or pooler aliases, never share both)
    identity: tuple[str, str] = ("", "")
    #: the sessions' default_transaction_isolation (a role's or database's setting)
    isolation: str = "read committed"
    #: the rights on the schema's tables and claim() that workers and the API use and
    #: the role lacks, as ``jobs (INSERT, DELETE); waiters (DELETE)``; "" when none
    missing_rights: str = ""


#: What a schema without conveyor's tables answers.
MISSING = SchemaState(0, True, True)


def state_of(row: tuple[Any, ...] | None) -> SchemaState:
    """The answer of :func:`state_query` (no row: no conveyor schema there)."""
    if row is None:
        return MISSING
    version, autovacuum, table_autovacuum, database, created, isolation, missing = row
    return SchemaState(
        version, autovacuum, table_autovacuum, (database, created), isolation, missing or ""
    )


def exists_query(schema: str) -> sql.Composed:
    """Whether the schema's ``schema_version`` table is there (NULL if not), asked
    before :func:`state_query`: a statement that failed on a missing table would leave
    a caller's transaction failed."""
    table = sql.Identifier(schema, "schema_version").as_string(None)
    return sql.SQL("SELECT to_regclass({table})").format(table=sql.Literal(table))


#: The tables whose rights a worker and the API use: SELECT, INSERT, UPDATE and DELETE
#: on each (what docs/postgres.md says to grant), and EXECUTE on claim(). A table or
#: function an older schema lacks is not asked about (its version is refused anyway).
_TABLES = ("counters", "jobs", "minute_counts", "queues", "waiters", "workers")
_CLAIM = "claim(text[], text, integer, double precision, integer[], double precision[], text[])"
_MISSING_RIGHTS = (
    " (SELECT string_agg(lack, '; ' ORDER BY lack) FROM ("
    "  SELECT t || ' (' || string_agg(r, ', ' ORDER BY o) || ')' AS lack"
    "  FROM unnest({tables}::text[]) AS t,"
    "   unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) WITH ORDINALITY AS p(r, o)"
    "  WHERE NOT has_table_privilege(to_regclass({prefix} || t), r)"
    "  GROUP BY t"
    "  UNION ALL SELECT 'claim() (EXECUTE)'"
    "  WHERE NOT has_function_privilege(to_regprocedure({claim}), 'EXECUTE')) AS m)"
)


def state_query(schema: str) -> sql.Composed:
    """One statement: the schema's version, both autovacuum settings, its identity and
    the rights the role lacks."""
    prefix = sql.Identifier(schema).as_string(None) + "."
    rights = sql.SQL(_MISSING_RIGHTS).format(
        tables=sql.Literal(list(_TABLES)),
        prefix=sql.Literal(prefix),
        claim=sql.Literal(prefix + _CLAIM),
    )
    return sql.SQL(
        "SELECT coalesce(max(v.version), 0), current_setting('autovacuum')::boolean,"
        " coalesce((SELECT bool_and(o.option_value::boolean)"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,"
        " pg_options_to_table(c.reloptions) o"
        " WHERE n.nspname = {name} AND c.relname = 'jobs'"
        " AND o.option_name = 'autovacuum_enabled'), true),"
        " current_database()::text, coalesce(extract(epoch FROM min(v.applied_at))::text, ''),"
        " current_setting('default_transaction_isolation'),{rights}"
        " FROM {schema}.schema_version v"
    ).format(name=sql.Literal(schema), schema=sql.Identifier(schema), rights=rights)


def vacuum_warnings(schema: str, state: SchemaState) -> list[str]:
    """What these settings do to a busy queue, one sentence each."""
    table = f"{schema}.jobs"
    consequence = (
        "the dead row versions every claim and outcome leave stay in the table and its "
        "indexes, and claims slow down as they pile up"
    )
    warnings: list[str] = []
    if not state.autovacuum:
        warnings.append(
            f"autovacuum is off on this server: {consequence}; turn it on, or run "
            f"`VACUUM {table}` every minute or so (see docs/postgres.md)"
        )
    if not state.table_autovacuum:
        warnings.append(
            f"autovacuum is off for {table} (autovacuum_enabled = false): {consequence}; "
            f"`ALTER TABLE {table} RESET (autovacuum_enabled)` (see docs/postgres.md)"
        )
    return warnings


def warn_once(where: str, schema: str, state: SchemaState) -> None:
    """Log the warnings of ``state`` the first time this process opens the schema."""
    if (where, schema) in _WARNED:
        return
    _WARNED.add((where, schema))
    for warning in vacuum_warnings(schema, state):
        logger.warning("PostgreSQL at %s: %s", where, warning)
