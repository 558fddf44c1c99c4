"""No SQL text in pgq's Python outside ``pgq.db.queries``: statements live as named
blocks in ``src/pgq/db/sql/*.sql`` (and the migrations), and code asks for them by
name (docs/architecture.md, "What may import what").

Every ``.py`` file under ``src/pgq`` is parsed; every string constant, f-string
(its expressions read as a name), ``+`` concatenation and ``%`` template that
starts like a SQL statement is a finding. Docstrings and other bare string
statements are not looked at: they run nothing. A statement start is a SQL
keyword followed by the syntax that follows it in SQL (``delete from``,
``create table``, ``set x =``...), so that help text such as "delete a schedule"
or "set the priority" is not taken for SQL.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import psycopg
import pytest

from pgq.db.queries import query, quote_ident

SRC = Path(__file__).resolve().parent.parent / "src" / "pgq"

#: The one module that reads SQL text (it holds none, but it is the reader).
READER = "db/queries.py"

#: (file under src/pgq, how the string starts) -> why it may hold SQL text.
ALLOWED = {
    ("demo.py", "  select id, task, status, attempts, result from "): (
        "printed for the user to try in psql after the demo; pgq never runs it"
    ),
    ("migrate_support.py", "create function"): (
        "a text edit of a shipped migration's own SQL (create -> create or replace), not a statement"
    ),
    ("migrate_support.py", "create or replace function"): "the replacement text of that same edit",
}

_IDENT = r"""[\w"%{.*]"""  # a name, quoted name, %s or {} placeholder
_STATEMENT = re.compile(
    rf"""^\s*\(?\s*(?:
        select\s+\S
      | insert\s+into\s
      | update\s+{_IDENT}+\s+(?:\w+\s+)?set\s
      | delete\s+from\s
      | with\s+(?:recursive\s+)?{_IDENT}+\s*(?:\([^)]*\)\s*)?as\s*(?:not\s+)?(?:materialized\s*)?\(
      | (?:listen|unlisten|notify)\s+{_IDENT}
      | create\s+(?:or\s+replace\s+)?(?:(?:temp|temporary|unlogged|unique)\s+)*
            (?:table|index|database|schema|function|procedure|trigger|view|materialized\s+view|extension|type
              |sequence|role|user|policy|publication|subscription)\b
      | drop\s+(?:table|index|database|schema|function|procedure|trigger|view|materialized\s+view|extension|type
              |sequence|role|user|policy|owned|publication|subscription)\b
      | alter\s+(?:system|table|database|schema|index|function|procedure|role|user|sequence|type|extension|view)\b
      | truncate\s+(?:table\s+)?{_IDENT}
      | savepoint\s+{_IDENT}
      | release\s+(?:savepoint\s+)?{_IDENT}+\s*(?:;|$)
      | rollback(?:\s+to\b|\s*(?:;|$))
      | set\s+(?:local\s+|session\s+)?{_IDENT}+\s*(?:=|to\b)
      | show\s+{_IDENT}+\s*(?:;|$)
      | vacuum(?:\s*\(|\s+(?:full|freeze|verbose|analyze)\b|\s+{_IDENT}+\s*(?:;|$)|\s*$)
      | analy[sz]e(?:\s*\(|\s+verbose\b|\s+{_IDENT}+\s*(?:;|$))
      | copy\s+{_IDENT}+\s*(?:\([^)]*\)\s*)?(?:from|to)\s
      | explain\s+(?:\(|analyze\b|verbose\b|select\b|insert\b|update\b|delete\b|with\b)
      | lock\s+table\s
      | do\s+\$
      | call\s+{_IDENT}+\s*\(
    )""",
    re.IGNORECASE | re.VERBOSE,
)


#: A piece of a statement (a condition, a list of values) rather than a whole one: a bind
#: parameter where SQL syntax surrounds it. A logging format ("%(name)s: %(message)s") is not.
_FRAGMENT = re.compile(r"cast\s*\(\s*%\(\w+\)[sb]|(?:[=<>@]|\bin)\s*%\(\w+\)[sb]|%\(\w+\)[sb]\s*(?:::|as\b|is\b)", re.I)


def _text(node: ast.AST) -> str | None:
    """The text a string expression builds, each interpolated value read as the name ``x``;
    None if ``node`` builds no string."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.JoinedStr):
        return "".join(_text(part) or "x" for part in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        left = _text(node.left)
        if isinstance(node.op, ast.Mod):
            return left
        right = _text(node.right)
        if left is None and right is None:
            return None
        return (left or "x") + (right or "x")
    return None


def sql_strings(source: str) -> list[tuple[int, str]]:
    """(line, text) of each string in ``source`` that starts like a SQL statement."""
    tree = ast.parse(source)
    skipped: set[int] = set()
    for node in ast.walk(tree):
        # A docstring or any other bare string statement runs nothing.
        if isinstance(node, ast.Expr) and isinstance(node.value, (ast.Constant, ast.JoinedStr)):
            skipped.update(id(inner) for inner in ast.walk(node.value))
        # The parts of an f-string are read as the whole f-string.
        if isinstance(node, ast.JoinedStr):
            skipped.update(id(inner) for inner in ast.walk(node) if inner is not node)
    found: dict[tuple[int, str], None] = {}
    for node in ast.walk(tree):
        if id(node) in skipped or not isinstance(node, ast.expr):
            continue
        text = _text(node)
        if text is not None and isinstance(node, ast.BinOp):
            # The parts of a concatenation are read as the whole (ast.walk gives parents first).
            skipped.update(id(inner) for inner in ast.walk(node) if inner is not node)
        if text is not None and (_STATEMENT.match(text) or _FRAGMENT.search(text)):
            found[(node.lineno, text)] = None
    return sorted(found)


def _files() -> list[Path]:
    return sorted(path for path in SRC.rglob("*.py") if path.relative_to(SRC).as_posix() != READER)


def test_no_sql_text_outside_the_named_blocks() -> None:
    findings = []
    used = set()
    for path in _files():
        name = path.relative_to(SRC).as_posix()
        for line, text in sql_strings(path.read_text(encoding="utf-8")):
            allowed = next((key for key in ALLOWED if key[0] == name and text.startswith(key[1])), None)
            if allowed is None:
                findings.append(f"src/pgq/{name}:{line}: {text.strip()[:80]!r}")
            else:
                used.add(allowed)
    assert not findings, (
        "SQL text outside pgq/db/sql: put it in a named block of src/pgq/db/sql/*.sql, declare it "
        "in pgq/db/store.py and run it through the store:\n" + "\n".join(findings)
    )
    assert used == set(ALLOWED), f"allow-list entries that match nothing any more: {set(ALLOWED) - used}"


def test_the_check_sees_sql_however_it_is_written() -> None:
    source = '''
"""select a docstring is not SQL"""
HELP = "delete a schedule"
OTHER = "set the priority (higher runs first)"
A = f'listen "{channel}"'
B = "select pg_notify(%s, %s)"
C = 'truncate "' + schema + '".jobs'
D = "set lock_timeout = %d" % ms
E = f"""with d as (delete from {jobs} returning *) insert into h select * from d"""
F = "release savepoint pgq_session; savepoint pgq_session"
G = f"show {name}"
H = f"alter system set {setting} = 'off'"
I = "Vacuum the table"
J = """(cast(%(f_status)s as text) is null or x.status = %(f_status)s)"""
K = "%(asctime)s %(levelname)s %(name)s: %(message)s"
'''
    texts = [text for _, text in sql_strings(source)]
    assert texts == [
        'listen "x"',
        "select pg_notify(%s, %s)",
        'truncate "x".jobs',
        "set lock_timeout = %d",
        "with d as (delete from x returning *) insert into h select * from d",
        "release savepoint pgq_session; savepoint pgq_session",
        "show x",
        "alter system set x = 'off'",
        "(cast(%(f_status)s as text) is null or x.status = %(f_status)s)",
    ]


def test_identifiers_are_quoted_into_a_query() -> None:
    assert query("listen", channel="pgq_jobs") == 'listen "pgq_jobs"'
    assert query("listen", channel='my"schema_jobs') == 'listen "my""schema_jobs"'
    assert query("admin_create_database_from", database="a b", template='t"') == 'create database "a b" template "t"""'
    # A schema holding the text of a placeholder stays as it is (one pass).
    assert query("bench_clear", "{ident:x}") == 'truncate "{ident:x}".jobs, "{ident:x}".job_history'
    with pytest.raises(TypeError, match="needs the identifier 'channel'"):
        query("listen")
    with pytest.raises(TypeError, match="has no"):
        query("listen", channel="a", other="b")
    with pytest.raises(TypeError, match="needs a schema"):
        query("bench_clear")
    with pytest.raises(KeyError, match="no query named"):
        query("no_such_query")


def test_listen_hears_a_channel_whose_name_holds_a_double_quote(database_url: str) -> None:
    channel = 'pgq"odd schema_jobs'
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(query("listen", channel=channel))
        conn.execute(query("notify"), {"channel": channel, "payload": "hello"})
        heard = [(n.channel, n.payload) for n in conn.notifies(timeout=5, stop_after=1)]
    assert heard == [(channel, "hello")]
    assert quote_ident(channel) in query("listen", channel=channel)
