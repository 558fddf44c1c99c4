"""The schema and every statement stay ready for Citus, distributed by ``queue`` (issue 18).

No Citus build installs here, so the path is checked mechanically, on a migrated
database of each server the suite runs:

- every primary key and unique index of the distributed tables includes ``queue``,
  and no foreign key points at them (Citus refuses both otherwise);
- no statement pgq runs joins two distributed tables on anything but ``queue``.
  The statements are every named block of ``pgq/db/sql`` and every SQL statement
  inside pgq's functions (read back from the database with
  ``pg_get_functiondef``, their PL/pgSQL parsed by libpg_query through pglast).
  A join is two distributed tables in one ``FROM`` (a join, a comma, ``USING``,
  the target of an ``UPDATE``/``DELETE``), or a subquery over one that refers to
  a distributed table of the query around it (correlated: Citus cannot plan it
  apart). It is ready when the two are tied by ``queue``: ``a.queue = b.queue``,
  or both equal to the same value (a router query, on one shard). Uncorrelated
  subqueries and CTEs are left out: Citus plans them apart and joins their result.

docs/scaling.md ("Past one primary: Citus") gives the calls that distribute the
tables and what is not supported yet.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgq.db.queries import identifier_names, names, query

parser = pytest.importorskip("pglast.parser")

SQL_FOLDER = Path(__file__).resolve().parent.parent / "src" / "pgq" / "db" / "sql"

#: The tables distributed by queue (docs/scaling.md gives the calls). all_jobs is
#: their union (a view), so it counts as one of them.
DISTRIBUTED = {"jobs", "job_history", "job_keys", "queue_groups", "all_jobs"}


# ------------------------------------------------------------------ the schema


def test_every_unique_index_of_a_distributed_table_includes_queue(conn: psycopg.Connection[Any]) -> None:
    rows = conn.execute(
        # A partition's keys count as its table's (job_history's partitions, 0018): Citus
        # distributes each partition by the parent's column.
        """select coalesce(parent.relname, c.relname) as table_name, i.relname as index_name,
                  array(select a.attname from unnest(x.indkey) k join pg_attribute a
                         on a.attrelid = c.oid and a.attnum = k) as columns
             from pg_index x
             join pg_class c on c.oid = x.indrelid
             join pg_class i on i.oid = x.indexrelid
             left join pg_inherits inh on inh.inhrelid = c.oid and c.relispartition
             left join pg_class parent on parent.oid = inh.inhparent
            where c.relnamespace = 'pgq'::regnamespace and x.indisunique"""
    ).fetchall()
    distributed = [r for r in rows if r["table_name"] in DISTRIBUTED]
    assert {r["table_name"] for r in distributed} >= DISTRIBUTED - {"all_jobs"}, "a distributed table without a key"
    without = [
        f"{r['table_name']}.{r['index_name']} {r['columns']}" for r in distributed if "queue" not in r["columns"]
    ]
    assert without == [], f"unique indexes without queue: {without}"


def test_no_foreign_key_points_at_or_from_a_distributed_table(conn: psycopg.Connection[Any]) -> None:
    keys = conn.execute(
        """select conrelid::regclass::text as source, confrelid::regclass::text as target from pg_constraint
            where contype = 'f' and (conrelid::regclass::text like 'pgq.%' or confrelid::regclass::text like 'pgq.%')"""
    ).fetchall()
    touching = [k for k in keys if {k["source"].split(".")[-1], k["target"].split(".")[-1]} & DISTRIBUTED]
    assert touching == []


# -------------------------------------------------------------- the statements


@dataclass(frozen=True)
class Join:
    where: str  # the named block or function
    left: str
    right: str
    by_queue: bool

    def __str__(self) -> str:
        return f"{self.where}: {self.left} with {self.right}"


def as_sql(text: str) -> str:
    """A named block made parseable: bind parameters become $1 (their names do not matter
    here)."""
    text = re.sub(r"%\(\w+\)[sbt]|%[sbt]", "$1", text)
    return text.replace("%%", "%")


def named_blocks() -> Iterator[tuple[str, str]]:
    """Every named block but the parts (fragments other blocks include with {part:x})."""
    sql = "".join(f.read_text() for f in sorted(SQL_FOLDER.glob("*.sql")))
    parts = set(re.findall(r"\{part:(\w+)\}", sql))
    for name in names():
        if name not in parts:
            yield name, as_sql(query(name, "pgq", **{ident: "x" for ident in identifier_names(name)}))


def function_statements(conn: psycopg.Connection[Any]) -> Iterator[tuple[str, str]]:
    """Each SQL statement and expression inside pgq's functions, as the database holds them."""
    rows = conn.execute(
        """select p.proname, l.lanname, pg_get_functiondef(p.oid), p.prosrc
             from pg_proc p join pg_language l on l.oid = p.prolang
            where p.pronamespace = 'pgq'::regnamespace and p.prokind = 'f'"""
    ).fetchall()
    for row in rows:
        name, language, definition, source = row["proname"], row["lanname"], row["pg_get_functiondef"], row["prosrc"]
        if language == "sql":
            yield name, source
        elif language == "plpgsql":
            # libpg_query resolves a schema-qualified type (pgq.jobs as a row type) only in
            # public: the schema's name does not matter to this check.
            definition = definition.replace("pgq.", "public.")
            for node in walk(json.loads(parser.parse_plpgsql_json(definition))):
                expr = node.get("PLpgSQL_expr")
                if not isinstance(expr, dict) or "query" not in expr:
                    continue
                # parseMode 0 is a whole statement; 2 an expression (if, return); 3-5 an
                # assignment ("x := expr", "x[i] := expr").
                mode, text = int(expr.get("parseMode", 0)), expr["query"]
                if mode >= 3:
                    text = text.split(":=", 1)[1]
                yield name, text if mode == 0 else f"select {text}"


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every node below ``node`` (dicts of one key, as libpg_query's JSON writes them)."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


LEVELS = ("SelectStmt", "UpdateStmt", "DeleteStmt")


def relations(level: dict[str, Any], ctes: set[str]) -> dict[str, str]:
    """alias -> table for the distributed tables this query level reads in its FROM, USING
    and target (not inside subqueries: those are levels of their own)."""
    found: dict[str, str] = {}

    def add(item: Any) -> None:
        if not isinstance(item, dict):
            return
        if "RangeVar" in item:
            rv = item["RangeVar"]
            table = rv["relname"]
            if table in DISTRIBUTED and not (table in ctes and "schemaname" not in rv):
                alias = (rv.get("alias") or {}).get("aliasname", table)
                found[alias] = table
        elif "JoinExpr" in item:
            add(item["JoinExpr"].get("larg"))
            add(item["JoinExpr"].get("rarg"))

    for key in ("fromClause", "usingClause"):
        for item in level.get(key) or []:
            add(item)
    if "relation" in level:
        add({"RangeVar": level["relation"]})
    return found


def quals(level: dict[str, Any]) -> list[Any]:
    """The conditions of this level: WHERE and the ON of its joins."""
    found = [level.get("whereClause")]
    joins = [item["JoinExpr"] for item in level.get("fromClause") or [] if "JoinExpr" in item]
    while joins:  # the ON of each join, nested joins included, never a subquery's
        join = joins.pop()
        found.append(join.get("quals"))
        joins += [side["JoinExpr"] for side in (join.get("larg"), join.get("rarg")) if side and "JoinExpr" in side]
    return found


def column(node: Any) -> tuple[str, ...] | None:
    if isinstance(node, dict) and "ColumnRef" in node:
        fields = node["ColumnRef"]["fields"]
        if all("String" in f for f in fields):
            return tuple(f["String"]["sval"] for f in fields)
    return None


def canonical(node: Any) -> str:
    """A value's tree as text, without the positions that make two equal ones differ."""

    def strip(n: Any) -> Any:
        if isinstance(n, dict):
            return {k: strip(v) for k, v in n.items() if k != "location"}
        if isinstance(n, list):
            return [strip(v) for v in n]
        return n

    return json.dumps(strip(node), sort_keys=True)


def queue_values(conditions: list[Any], aliases: dict[str, str]) -> dict[str, set[str]]:
    """For each alias, what its queue is said equal to (columns of others, parameters, variables)."""
    values: dict[str, set[str]] = {alias: set() for alias in aliases}
    only = next(iter(aliases)) if len(aliases) == 1 else None
    for condition in conditions:
        for node in walk(condition):
            expr = node.get("A_Expr")
            if not expr or expr.get("kind") != "AEXPR_OP" or expr["name"][-1]["String"]["sval"] != "=":
                continue
            sides = [expr.get("lexpr"), expr.get("rexpr")]
            for this, other in (sides, sides[::-1]):
                col = column(this)
                if col is None or col[-1] != "queue":
                    continue
                alias = col[0] if len(col) == 2 else only
                if alias in values:
                    other_col = column(other)
                    values[alias].add(".".join(other_col) if other_col else canonical(other))
    return values


def tied(a: str, b: str, values: dict[str, set[str]]) -> bool:
    va, vb = values.get(a, set()), values.get(b, set())
    return f"{b}.queue" in va or f"{a}.queue" in vb or bool(va & vb - {f"{a}.queue", f"{b}.queue"})


def joins(where: str, sql: str) -> list[Join]:
    tree = json.loads(parser.parse_sql_json(sql))
    ctes = {node["CommonTableExpr"]["ctename"] for node in walk(tree) if "CommonTableExpr" in node}
    found: list[Join] = []
    for node in walk(tree):
        kind = next((k for k in LEVELS if k in node), None)
        if kind is None:
            continue
        level = node[kind]
        outer = relations(level, ctes)
        conditions = quals(level)
        values = queue_values(conditions, outer)
        pairs = sorted(outer)
        for i, a in enumerate(pairs):
            for b in pairs[i + 1 :]:
                found.append(Join(where, f"{outer[a]} {a}", f"{outer[b]} {b}", tied(a, b, values)))
        # Correlated subqueries (and LATERAL ones) over a distributed table.
        for sub in walk([level.get("whereClause"), level.get("targetList"), level.get("fromClause")]):
            inner_level = None
            if "SubLink" in sub:
                inner_level = sub["SubLink"]["subselect"].get("SelectStmt")
            elif "RangeSubselect" in sub and sub["RangeSubselect"].get("lateral"):
                inner_level = sub["RangeSubselect"]["subquery"].get("SelectStmt")
            if not inner_level:
                continue
            inner = relations(inner_level, ctes)
            if not inner:
                continue
            refers = {
                col[0]
                for n in walk(inner_level)
                if (col := column(n)) is not None and len(col) == 2 and col[0] in outer and col[0] not in inner
            }
            if not refers:
                continue
            both = {**outer, **inner}
            sub_values = queue_values([*conditions, inner_level.get("whereClause")], both)
            for a in sorted(refers):
                for b in sorted(inner):
                    joined = Join(where, f"{outer[a]} {a}", f"{inner[b]} {b} (correlated)", tied(a, b, sub_values))
                    found.append(joined)
    return found


def test_the_parser_sees_joins_that_are_not_by_queue() -> None:
    """The check itself: it finds each kind of join it must find, and passes the tied ones."""
    untied = [
        "select * from pgq.jobs j join pgq.job_history h on h.id = j.id",
        "select * from pgq.jobs j, pgq.job_keys k where k.key = j.key",
        "delete from pgq.jobs j using pgq.job_history h where h.id = j.id",
        "select * from pgq.jobs j where exists (select from pgq.jobs p where p.id = any(j.depends_on))",
        "select * from pgq.jobs j cross join lateral (select * from pgq.job_history h where h.id = j.id) x",
    ]
    tied_ones = [
        "select * from pgq.jobs j join pgq.job_history h on h.id = j.id and h.queue = j.queue",
        "select * from pgq.jobs j, pgq.job_keys k where k.key = j.key and j.queue = $1 and k.queue = $1",
        "select * from pgq.jobs j where exists (select from pgq.jobs p where p.id = j.id and p.queue = j.queue)",
        "select * from pgq.jobs j where j.id in (select id from pgq.job_history)",  # not correlated
        "with gone as (delete from pgq.jobs returning *) insert into pgq.job_history select * from gone",
    ]
    assert [sql for sql in untied if [j.by_queue for j in joins("probe", sql)] != [False]] == []
    assert [str(j) for sql in tied_ones for j in joins("probe", sql) if not j.by_queue] == []


def test_no_statement_joins_distributed_tables_but_by_queue(conn: psycopg.Connection[Any]) -> None:
    statements = [*named_blocks(), *function_statements(conn)]
    assert len(statements) > 200, "the statements were not all found"
    unparsed = []
    found: list[Join] = []
    for where, sql in statements:
        try:
            found += joins(where, sql)
        except parser.ParseError as exc:  # pragma: no cover - names what could not be read
            unparsed.append(f"{where}: {exc}")
    assert unparsed == [], "\n".join(unparsed)
    not_ready = sorted({str(j) for j in found if not j.by_queue})
    assert not_ready == [], "joins of distributed tables not by queue:\n" + "\n".join(not_ready)
    # The joins there are today, all by queue (docs/scaling.md names them): the check sees them.
    assert {j.where for j in found if j.by_queue} >= {"job_retry", "sweep_prune_keys", "sweep_prune_queue_groups"}
