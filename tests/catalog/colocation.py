"""The Citus co-location lint: docs/scaling.md's declarations, checked against the live catalog.

docs/scaling.md holds three tables between ``<!-- lint:NAME -->`` markers: every table of the
schemas with its kind (distributed by a column, reference, or local to the coordinator), the
functions that take ``p_client_id`` first, and the trigger functions. This module reads them
and checks them against ``pg_catalog`` of an installed database, so the doc cannot drift from
the schema and a new table, key or trigger that breaks co-location fails the suite.

What it checks is the rule set of Citus' reference (distribution column in every primary key,
unique constraint and unique index; foreign keys between distributed tables on the
distribution column; none from a reference table to a distributed one), plus a *textual*
reading of function bodies: it is not a SQL parser (aliases are matched by name within one
statement), and it proves only what it says (see docs/scaling.md, "What the lint proves").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

DOC = Path(__file__).resolve().parents[2] / "docs" / "scaling.md"
SCHEMAS = ("crm", "crm_private")
TABLE_KINDS = ("distributed", "reference", "local")
FUNCTION_STATUSES = ("single-shard", "coordinator", "change")
TRIGGER_STATUSES = ("unchanged", "change")

# How a body names its one client: a function by its first argument, a row-level trigger by the
# row that fired it.
ANCHORS_FUNCTION = ("p_client_id",)
ANCHORS_TRIGGER = ("new.client_id", "old.client_id")


# --- docs/scaling.md -------------------------------------------------------------------------


def doc_rows(text: str, name: str) -> list[list[str]]:
    """The body rows of the markdown table between ``<!-- lint:NAME -->`` and its end marker,
    each a list of stripped cells (header and separator rows dropped)."""
    found = re.search(rf"<!-- lint:{name} -->\n(.*?)<!-- /lint:{name} -->", text, re.S)
    if found is None:
        raise LookupError(f"docs/scaling.md has no table between <!-- lint:{name} --> markers")
    lines = [line.strip() for line in found.group(1).splitlines() if line.strip().startswith("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return rows[2:]


def names_in(cell: str) -> list[str]:
    """The code spans of a cell: `crm.a`, `crm.b` -> ["crm.a", "crm.b"]."""
    return re.findall(r"`([^`]+)`", cell)


@dataclass(frozen=True)
class TableDecl:
    table: str
    kind: str
    column: str | None


@dataclass
class Declarations:
    """What docs/scaling.md declares."""

    tables: dict[str, TableDecl]
    functions: dict[str, str]  # schema.name -> status
    triggers: dict[str, str]  # schema.name of a trigger function -> status
    problems: list[str] = field(default_factory=list)  # malformed rows


def read_declarations(text: str) -> Declarations:
    problems: list[str] = []
    tables: dict[str, TableDecl] = {}
    for row in doc_rows(text, "tables"):
        names, kind, column = names_in(row[0]), row[1].strip("`"), names_in(row[2])
        if len(names) != 1 or kind not in TABLE_KINDS:
            problems.append(
                f"table map row {row!r}: one `schema.table` and a kind of {TABLE_KINDS}"
            )
            continue
        if (kind == "distributed") != bool(column):
            problems.append(
                f"table map row {row!r}: a distributed table names its column, others none"
            )
        if names[0] in tables:
            problems.append(f"table map: {names[0]} is listed twice")
        tables[names[0]] = TableDecl(names[0], kind, column[0] if column else None)

    def statuses(name: str, allowed: tuple[str, ...]) -> dict[str, str]:
        out: dict[str, str] = {}
        for row in doc_rows(text, name):
            status = row[1].strip("`")
            if status not in allowed or not names_in(row[0]):
                problems.append(f"{name} row {row!r}: `schema.name`s and a status of {allowed}")
                continue
            for function in names_in(row[0]):
                if function in out:
                    problems.append(f"{name}: {function} is listed twice")
                out[function] = status
        return out

    return Declarations(
        tables,
        statuses("functions", FUNCTION_STATUSES),
        statuses("triggers", TRIGGER_STATUSES),
        problems,
    )


# --- the catalog -----------------------------------------------------------------------------


@dataclass
class Table:
    name: str
    columns: dict[str, tuple[str, bool]]  # column -> (type, NOT NULL)
    has_primary_key: bool


@dataclass(frozen=True)
class UniqueKey:
    table: str
    name: str  # the constraint's name, else the index's
    what: str  # "primary key", "unique constraint", "unique index", "exclusion constraint"
    columns: tuple[str | None, ...]  # key columns; None for an expression
    definition: str


@dataclass(frozen=True)
class ForeignKey:
    name: str
    table: str
    columns: tuple[str, ...]
    referenced: str
    referenced_columns: tuple[str, ...]


@dataclass(frozen=True)
class Sequenced:
    table: str
    column: str
    type: str


@dataclass(frozen=True)
class Function:
    signature: str  # regprocedure text
    name: str  # schema.name
    args: tuple[str, ...]
    arg_types: tuple[str, ...]
    definition: str  # pg_get_functiondef


@dataclass(frozen=True)
class Trigger:
    table: str
    name: str
    function: str  # schema.name
    row_level: bool


@dataclass
class Catalog:
    tables: dict[str, Table]
    unique_keys: list[UniqueKey]
    foreign_keys: list[ForeignKey]
    sequenced: list[Sequenced]
    functions: dict[str, list[Function]]  # schema.name -> overloads
    triggers: list[Trigger]


def read_catalog(conn: psycopg.Connection[Any]) -> Catalog:
    schemas = list(SCHEMAS)
    tables: dict[str, Table] = {}
    for name, has_pkey in conn.execute(
        """
        SELECT format('%%I.%%I', n.nspname, c.relname),
               EXISTS (SELECT 1 FROM pg_catalog.pg_constraint AS p
                       WHERE p.conrelid = c.oid AND p.contype = 'p')
        FROM pg_catalog.pg_class AS c
        INNER JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY (%(schemas)s) AND c.relkind IN ('r', 'p') AND NOT c.relispartition
        """,
        {"schemas": schemas},
    ).fetchall():
        tables[name] = Table(name, {}, has_pkey)
    for table, column, typ, not_null in conn.execute(
        """
        SELECT format('%%I.%%I', n.nspname, c.relname), a.attname,
               pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull
        FROM pg_catalog.pg_attribute AS a
        INNER JOIN pg_catalog.pg_class AS c ON c.oid = a.attrelid
        INNER JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY (%(schemas)s) AND c.relkind IN ('r', 'p')
          AND a.attnum > 0 AND NOT a.attisdropped
        """,
        {"schemas": schemas},
    ).fetchall():
        if table in tables:
            tables[table].columns[column] = (typ, not_null)

    unique_keys = [
        UniqueKey(table, name, what, tuple(columns), definition)
        for table, name, what, columns, definition in conn.execute(
            """
            SELECT format('%%I.%%I', n.nspname, c.relname),
                   coalesce(con.conname, i.relname),
                   CASE WHEN x.indisprimary THEN 'primary key'
                        WHEN con.contype = 'u' THEN 'unique constraint'
                        WHEN con.contype = 'x' THEN 'exclusion constraint'
                        ELSE 'unique index' END,
                   array(SELECT a.attname
                         FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k (attnum, ord)
                         LEFT JOIN pg_catalog.pg_attribute AS a
                             ON a.attrelid = x.indrelid AND a.attnum = k.attnum
                         WHERE k.ord <= x.indnkeyatts
                         ORDER BY k.ord),
                   pg_catalog.pg_get_indexdef(x.indexrelid)
            FROM pg_catalog.pg_index AS x
            INNER JOIN pg_catalog.pg_class AS c ON c.oid = x.indrelid
            INNER JOIN pg_catalog.pg_class AS i ON i.oid = x.indexrelid
            INNER JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
            LEFT JOIN pg_catalog.pg_constraint AS con ON con.conindid = x.indexrelid
                AND con.conrelid = x.indrelid AND con.contype IN ('p', 'u', 'x')
            WHERE n.nspname = ANY (%(schemas)s) AND (x.indisunique OR con.contype = 'x')
            ORDER BY 1, 2
            """,
            {"schemas": schemas},
        ).fetchall()
    ]

    foreign_keys = [
        ForeignKey(name, table, tuple(columns), referenced, tuple(referenced_columns))
        for name, table, columns, referenced, referenced_columns in conn.execute(
            """
            SELECT con.conname,
                   format('%%I.%%I', n.nspname, c.relname),
                   array(SELECT a.attname
                         FROM unnest(con.conkey) WITH ORDINALITY AS k (attnum, ord)
                         INNER JOIN pg_catalog.pg_attribute AS a
                             ON a.attrelid = con.conrelid AND a.attnum = k.attnum
                         ORDER BY k.ord),
                   format('%%I.%%I', rn.nspname, r.relname),
                   array(SELECT a.attname
                         FROM unnest(con.confkey) WITH ORDINALITY AS k (attnum, ord)
                         INNER JOIN pg_catalog.pg_attribute AS a
                             ON a.attrelid = con.confrelid AND a.attnum = k.attnum
                         ORDER BY k.ord)
            FROM pg_catalog.pg_constraint AS con
            INNER JOIN pg_catalog.pg_class AS c ON c.oid = con.conrelid
            INNER JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
            INNER JOIN pg_catalog.pg_class AS r ON r.oid = con.confrelid
            INNER JOIN pg_catalog.pg_namespace AS rn ON rn.oid = r.relnamespace
            WHERE con.contype = 'f'
              AND (n.nspname = ANY (%(schemas)s) OR rn.nspname = ANY (%(schemas)s))
            ORDER BY 2, 1
            """,
            {"schemas": schemas},
        ).fetchall()
    ]

    sequenced = [
        Sequenced(table, column, typ)
        for table, column, typ in conn.execute(
            """
            SELECT format('%%I.%%I', n.nspname, c.relname), a.attname,
                   pg_catalog.format_type(a.atttypid, a.atttypmod)
            FROM pg_catalog.pg_attribute AS a
            INNER JOIN pg_catalog.pg_class AS c ON c.oid = a.attrelid
            INNER JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
            LEFT JOIN pg_catalog.pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE n.nspname = ANY (%(schemas)s) AND c.relkind IN ('r', 'p')
              AND a.attnum > 0 AND NOT a.attisdropped
              AND (a.attidentity <> ''
                   OR pg_catalog.pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%%')
            """,
            {"schemas": schemas},
        ).fetchall()
    ]

    functions: dict[str, list[Function]] = {}
    for signature, name, args, arg_types, definition in conn.execute(
        """
        SELECT p.oid::regprocedure::text,
               format('%%I.%%I', n.nspname, p.proname),
               coalesce(p.proargnames[1:p.pronargs], '{}'),
               array(SELECT pg_catalog.format_type(t, NULL)
                     FROM unnest(p.proargtypes) AS t),
               pg_catalog.pg_get_functiondef(p.oid)
        FROM pg_catalog.pg_proc AS p
        INNER JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
        WHERE n.nspname = ANY (%(schemas)s) AND p.prokind IN ('f', 'p')
        ORDER BY 1
        """,
        {"schemas": schemas},
    ).fetchall():
        functions.setdefault(name, []).append(
            Function(signature, name, tuple(args), tuple(arg_types), definition)
        )

    triggers = [
        Trigger(table, name, function, row_level)
        for table, name, function, row_level in conn.execute(
            """
            SELECT format('%%I.%%I', n.nspname, c.relname), t.tgname,
                   format('%%I.%%I', pn.nspname, p.proname), (t.tgtype & 1) = 1
            FROM pg_catalog.pg_trigger AS t
            INNER JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
            INNER JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
            INNER JOIN pg_catalog.pg_proc AS p ON p.oid = t.tgfoid
            INNER JOIN pg_catalog.pg_namespace AS pn ON pn.oid = p.pronamespace
            WHERE n.nspname = ANY (%(schemas)s) AND NOT t.tgisinternal
            ORDER BY 1, 2
            """,
            {"schemas": schemas},
        ).fetchall()
    ]
    return Catalog(tables, unique_keys, foreign_keys, sequenced, functions, triggers)


# --- keys: the rules Citus enforces when a table is distributed ---------------------------------


def key_findings(catalog: Catalog, declared: Mapping[str, TableDecl]) -> list[str]:
    """Every way the catalog's tables and keys break the declared distribution. Each finding
    names the table or constraint and says how to fix it."""
    found: list[str] = []
    for name in sorted(set(catalog.tables) - set(declared)):
        found.append(
            f"{name} is in no row of docs/scaling.md's table map: add it as distributed (by"
            " client_id, co-located with the tenant tables), reference (small, read with"
            " every client, written rarely) or local (coordinator only), with why"
        )
    for name in sorted(set(declared) - set(catalog.tables)):
        found.append(
            f"docs/scaling.md's table map lists {name}, which does not exist: drop the row"
        )

    def kind(table: str) -> str | None:
        decl = declared.get(table)
        return decl.kind if decl else None

    distributed = {
        n: d for n, d in declared.items() if d.kind == "distributed" and n in catalog.tables
    }
    types = set()
    for name, decl in sorted(distributed.items()):
        column = decl.column or ""
        info = catalog.tables[name].columns.get(column)
        if info is None:
            found.append(
                f"{name} has no column {column}, its declared distribution column: add"
                f" {column} (the tenant, NOT NULL, in every key) or declare the table reference"
            )
            continue
        typ, not_null = info
        types.add(typ)
        if not not_null:
            found.append(
                f"{name}.{column} is nullable: a distribution column must be NOT NULL (a row"
                f" without a tenant has no shard); add NOT NULL"
            )
        if not catalog.tables[name].has_primary_key:
            found.append(
                f"{name} has no primary key: Citus moves shards by logical replication, which"
                f" needs one; add PRIMARY KEY ({column}, id)"
            )
    if len(types) > 1:
        found.append(
            f"the distribution columns have different types {sorted(types)}: tables are"
            " co-located only when their distribution columns have the same type"
        )

    for key in catalog.unique_keys:
        owner = distributed.get(key.table)
        if owner is None or owner.column in key.columns:
            continue
        decl = owner
        found.append(
            f"{key.what} {key.name} on {key.table} does not include the distribution column"
            f" {decl.column} ({key.definition}): Citus enforces uniqueness only within a shard"
            f" and refuses such a key; put {decl.column} first in it, e.g. ({decl.column},"
            f" {', '.join(c or '<expression>' for c in key.columns)})"
        )

    for fk in catalog.foreign_keys:
        source, target = kind(fk.table), kind(fk.referenced)
        if source is None or target is None:
            continue  # undeclared: reported above
        pair = f"foreign key {fk.name} from {fk.table} to {fk.referenced}"
        if source == "distributed" and target == "distributed":
            column = declared[fk.table].column or ""
            ref_column = declared[fk.referenced].column
            mapped = dict(zip(fk.columns, fk.referenced_columns, strict=True))
            if mapped.get(column) != ref_column:
                found.append(
                    f"{pair} ({', '.join(fk.columns)}) -> ({', '.join(fk.referenced_columns)})"
                    f" does not map {column} to {ref_column}: between distributed tables a"
                    f" foreign key must include the distribution column on both sides, so the"
                    f" two rows live in the same shard group; make it ({column}, ...) REFERENCES"
                    f" {fk.referenced} ({ref_column}, ...)"
                )
        elif source == "distributed" and target == "local":
            found.append(
                f"{pair}: a distributed table may reference only co-located distributed tables"
                f" and reference tables; declare {fk.referenced} reference"
            )
        elif source in ("reference", "local") and target == "distributed":
            found.append(
                f"{pair}: a {source} table may not reference a distributed table (its rows are"
                f" not where the referenced rows are); drop the key, or distribute {fk.table}"
                f" by {declared[fk.referenced].column} too"
            )
        elif source == "reference" and target == "local":
            found.append(
                f"{pair}: a reference table may reference only reference tables; declare"
                f" {fk.referenced} reference"
            )

    for seq in catalog.sequenced:
        if kind(seq.table) in ("distributed", "reference") and seq.type != "bigint":
            found.append(
                f"{seq.table}.{seq.column} is a {seq.type} identity or serial column: on Citus"
                f" only bigint ones can be filled on every node; make it bigint"
            )

    local = sorted(n for n, d in declared.items() if d.kind == "local")
    for overloads in catalog.functions.values():
        for function in overloads:
            body = normalise(function)
            for table in local:
                if re.search(rf"(?<![\w.]){re.escape(table)}(?!\w)", body):
                    found.append(
                        f"{function.signature} reads {table}, which is local to the coordinator:"
                        f" on a worker it does not exist; declare {table} reference, or keep the"
                        " function out of the schema's runtime code"
                    )
    return found


# --- function bodies: a textual reading ---------------------------------------------------------

KEYWORDS = frozenset(
    """
    all and as by cross default do else end except fetch for from full group having inner
    intersect into join lateral left limit loop natural not offset on only or order outer
    returning right select set strict then union using values when where window with
    """.split()
)
REFERENCE = re.compile(
    r"\b(from|join|update|into|using)\s+(?:only\s+)?\(*\s*([a-z_]\w*(?:\.[a-z_]\w*)?)"
)
COMMA_REFERENCE = re.compile(r",\s*((?:crm|crm_private)\.[a-z_]\w*)(?!\s*\()")
CALL = re.compile(r"(?<![\w.])((?:crm|crm_private)\.[a-z_]\w*)\s*\(")
CTE = re.compile(r"(?:\bwith|,)\s+([a-z_]\w*)\s+as\s+(?:not\s+)?(?:materialized\s+)?\(")
EQUAL_CLIENT = re.compile(r"([a-z_]\w*)\.client_id\s*=\s*([a-z_]\w*)\.client_id\b")


def scrub(sql: str) -> str:
    """``sql`` without comments, with every string literal emptied ('') and identifiers in
    double quotes unquoted; what is left is lower-cased, whitespace collapsed."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if sql.startswith("--", i):
            i = sql.find("\n", i)
            i = n if i < 0 else i
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif ch == "'":
            j = i + 1
            while j < n:
                if sql[j] == "'" and sql.startswith("''", j):
                    j += 2
                elif sql[j] == "'":
                    break
                else:
                    j += 1
            out.append("''")
            i = j + 1
        elif ch == '"':
            j = sql.find('"', i + 1)
            j = n if j < 0 else j
            out.append(sql[i + 1 : j])
            i = j + 1
        else:
            out.append(ch)
            i += 1
    return " ".join("".join(out).lower().split())


def function_body(function: Function) -> str:
    """The body of a function as pg_get_functiondef shows it: the text between its dollar
    quotes, or everything from BEGIN ATOMIC (a SQL-standard body, shown parsed)."""
    text = function.definition
    quoted = re.search(r"\bAS (\$\w*\$)(.*)\1", text, re.S)
    if quoted:
        return quoted.group(2)
    atomic = text.find("BEGIN ATOMIC")
    return text[atomic:] if atomic >= 0 else text


def normalise(function: Function) -> str:
    """The scrubbed body, with the parameters a SQL-standard body shows qualified by the
    function's name (record_crm_id.p_client_id) unqualified."""
    body = scrub(function_body(function))
    short = function.name.split(".", 1)[1]
    return re.sub(rf"(?<![\w.]){re.escape(short)}\.(?=[a-z_])", "", body)


def balanced(text: str, open_at: int) -> int:
    """The index just past the parenthesis that closes the one at ``open_at``."""
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i + 1
    return len(text)


def split_top(text: str) -> list[str]:
    """``text`` split at its commas outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def bare(expression: str) -> str:
    expression = expression.strip()
    while expression.startswith("(") and balanced(expression, 0) == len(expression):
        expression = expression[1:-1].strip()
    return re.sub(r"::[\w. ]+$", "", expression).strip()


@dataclass
class Ref:
    table: str  # as written: crm.x, or a CTE or transition table name
    alias: str
    at: int
    insert: bool  # the target of an INSERT
    write: bool  # the target of an INSERT, UPDATE or DELETE


def references(statement: str) -> list[Ref]:
    refs: list[Ref] = []
    for match in REFERENCE.finditer(statement):
        name = match.group(2)
        rest = statement[match.end() :].lstrip()
        if rest.startswith("(") and not name.startswith(("crm.", "crm_private.")):
            continue  # a function in FROM: unnest(...), generate_series(...)
        words = re.match(r"(?:as\s+)?([a-z_]\w*)", rest)
        alias = name.rsplit(".", 1)[-1]
        if words and words.group(1) not in KEYWORDS:
            alias = words.group(1)
        verb, before = match.group(1), statement[: match.start()].rstrip()
        insert = verb == "into" and before.endswith("insert")
        write = insert or verb == "update" or (verb == "from" and before.endswith("delete"))
        refs.append(Ref(name, alias, match.start(), insert, write))
    for match in COMMA_REFERENCE.finditer(statement):
        rest = statement[match.end() :].lstrip()
        words = re.match(r"(?:as\s+)?([a-z_]\w*)", rest)
        alias = match.group(1).rsplit(".", 1)[-1]
        if words and words.group(1) not in KEYWORDS:
            alias = words.group(1)
        refs.append(Ref(match.group(1), alias, match.start(), False, False))
    return refs


def inserted_client(statement: str, ref: Ref) -> str | None:
    """The expression an INSERT writes into client_id: the VALUES item or select-list item at
    client_id's place in the column list; None when the INSERT names no client_id."""
    after = statement[ref.at :]
    opening = after.find("(")
    if opening < 0:
        return None
    closing = balanced(after, opening)
    source = re.compile(r"\b(values|select)\b").search(after, closing)
    if source is None:
        return None
    columns = [c.strip() for c in split_top(after[opening + 1 : closing - 1])]
    if "client_id" not in columns:
        return None
    position = columns.index("client_id")
    rest = after[source.start() :]
    if source.group(1) == "values":
        tuple_at = rest.find("(")
        items = split_top(rest[tuple_at + 1 : balanced(rest, tuple_at) - 1])
    else:
        depth, end = 0, len(rest)
        for i, ch in enumerate(rest):
            depth += (ch == "(") - (ch == ")")
            if depth == 0 and rest.startswith(" from ", i):
                end = i
                break
        items = split_top(rest[len("select") : end])
    if position >= len(items):
        return None
    return bare(re.sub(r"\s+as\s+[a-z_]\w*$", "", items[position]))


@dataclass
class Analysis:
    reasons: list[str]
    touches: bool  # names a distributed table or calls something that does


@dataclass(frozen=True)
class Anchor:
    """How a function knows its one client: the expressions that name it in its body
    (p_client_id; p_old.client_id for a row argument; NEW.client_id in a trigger), and what a
    caller passes for it: the client's id, or a row of that client."""

    names: tuple[str, ...]
    row: bool = False

    def describe(self) -> str:
        return " or ".join(self.names) if self.names else "one client"


NO_ANCHOR = Anchor(())
FUNCTION_ANCHOR = Anchor(ANCHORS_FUNCTION)
TRIGGER_ANCHOR = Anchor(ANCHORS_TRIGGER)


class Linter:
    """Reads function and trigger bodies against a table map."""

    def __init__(self, catalog: Catalog, declared: Mapping[str, TableDecl]) -> None:
        self.catalog = catalog
        self.kinds = {name: decl.kind for name, decl in declared.items()}
        self.memo: dict[str, Analysis] = {}

    def kind(self, table: str) -> str | None:
        return self.kinds.get(table)

    def anchor_of(self, function: Function) -> Anchor:
        """A function's client argument: p_client_id uuid first, or a row of a distributed
        table first (crm_private.meeting_reschedule_kind(p_old crm.meetings, ...))."""
        if not function.args:
            return NO_ANCHOR
        if function.args[0] == "p_client_id" and function.arg_types[0] == "uuid":
            return FUNCTION_ANCHOR
        if self.kind(function.arg_types[0]) == "distributed":
            return Anchor((f"{function.args[0]}.client_id",), row=True)
        return NO_ANCHOR

    def shard_local(self, function: Function) -> Analysis:
        """Whether ``function`` runs unchanged next to one client's shards when called with that
        client as its first argument (memoised by signature; a cycle counts as fine)."""
        if function.signature in self.memo:
            return self.memo[function.signature]
        self.memo[function.signature] = Analysis([], False)
        anchor = self.anchor_of(function)
        result = self.analyse(function, anchor)
        if result.touches and not anchor.names:
            result.reasons.insert(
                0,
                f"{function.signature} reads or writes distributed tables but takes neither"
                " p_client_id nor a row of a distributed table first, so no call of it names"
                " one shard",
            )
        self.memo[function.signature] = result
        return result

    def analyse(self, function: Function, anchor: Anchor) -> Analysis:
        """The reasons ``function`` cannot run unchanged on the shard of the client its
        ``anchor`` names, and whether it touches distributed tables at all."""
        raw = function_body(function)
        body = normalise(function)
        reasons: list[str] = []
        where = function.signature
        for setting in sorted(set(re.findall(r"current_setting\(\s*'(crm\.[\w.]+)'", raw))):
            reasons.append(
                f"{where} reads the setting {setting}: a setting its caller made on the"
                " coordinator does not reach a worker"
            )
        if "pg_notify" in body or re.search(r"\bnotify\b", body):
            reasons.append(
                f"{where} sends NOTIFY: it reaches only listeners of the node it runs on"
            )
        if "pg_advisory" in body:
            reasons.append(
                f"{where} takes an advisory lock: such a lock holds on one node only, so every"
                " taker must run on the same node"
            )
        touches = False
        for statement in body.split(";"):
            statement = statement.strip()
            if statement:
                problems, touched = self.statement(function, statement, anchor)
                reasons.extend(problems)
                touches = touches or touched
        return Analysis(reasons, touches)

    def statement(
        self, function: Function, statement: str, anchor: Anchor
    ) -> tuple[list[str], bool]:
        """The reasons one statement of ``function`` is not confined to the anchor's client."""
        where = function.signature
        excerpt = statement if len(statement) <= 140 else statement[:137] + "..."
        refs = references(statement)
        ctes: dict[str, tuple[int, int]] = {}
        for match in CTE.finditer(statement):
            open_at = match.end() - 1
            ctes[match.group(1)] = (open_at, balanced(statement, open_at))
        distributed = [r for r in refs if self.kind(r.table) == "distributed"]
        reasons = [
            f"{where} writes the reference table {ref.table}: that write goes to every node,"
            " not to one shard"
            for ref in refs
            if self.kind(ref.table) == "reference" and ref.write
        ]
        if distributed and "p_client_id is null" in statement:
            reasons.append(
                f"{where}: a NULL p_client_id means every client in `{excerpt}`, a multi-shard"
                " query"
            )

        # Aliases whose client_id is the anchor's client, directly, through client_id = client_id
        # equalities, through a CTE all of whose sources are such aliases, or as the target of
        # an INSERT that writes the anchor's client.
        pinned: set[str] = set()
        names = "|".join(re.escape(n) for n in anchor.names) or r"(?!x)x"
        for match in re.finditer(rf"([a-z_]\w*)\.client_id\s*=\s*(?:{names})(?![\w.])", statement):
            pinned.add(match.group(1))
        for match in re.finditer(
            rf"(?<![\w.])(?:{names})\s*=\s*([a-z_]\w*)\.client_id\b", statement
        ):
            pinned.add(match.group(1))
        edges = [(m.group(1), m.group(2)) for m in EQUAL_CLIENT.finditer(statement)]
        changed = True
        while changed:
            changed = False
            for a, b in edges:
                if (a in pinned) != (b in pinned):
                    pinned.update((a, b))
                    changed = True
            for name, (start, end) in ctes.items():
                sources = [
                    r
                    for r in refs
                    if start < r.at < end
                    and (self.kind(r.table) == "distributed" or r.table in ctes)
                ]
                if name not in pinned and sources and all(r.alias in pinned for r in sources):
                    pinned.add(name)
                    pinned.update(r.alias for r in refs if r.table == name)
                    changed = True
            for ref in distributed:
                if ref.insert and ref.alias not in pinned:
                    value = inserted_client(statement, ref)
                    if value is not None and self.names_client(value, anchor, pinned):
                        pinned.add(ref.alias)
                        changed = True
        for ref in distributed:
            if ref.alias in pinned:
                continue
            if ref.insert:
                reasons.append(
                    f"{where} inserts into {ref.table} a client_id that is not"
                    f" {anchor.describe()}: `{excerpt}`"
                )
            else:
                reasons.append(
                    f"{where} reads {ref.table} (as {ref.alias}) without tying"
                    f" {ref.alias}.client_id to {anchor.describe()}: `{excerpt}`"
                )

        touches = bool(distributed)
        for match in CALL.finditer(statement):
            callee = match.group(1)
            if callee in self.kinds or callee not in self.catalog.functions:
                continue  # a table (INSERT INTO crm.t (...)) or a type, not a call
            open_at = match.end() - 1
            first = bare(split_top(statement[open_at + 1 : balanced(statement, open_at) - 1])[0])
            for overload in self.catalog.functions[callee]:
                if overload.signature == function.signature:
                    continue
                result = self.shard_local(overload)
                if not result.touches and not result.reasons:
                    continue  # a helper that reads no table: any argument will do
                touches = True
                if result.reasons:
                    reasons.append(
                        f"{where} calls {overload.signature}, which cannot run on one shard: "
                        + result.reasons[0]
                    )
                    continue
                callee_anchor = self.anchor_of(overload)
                value = f"{first}.client_id" if callee_anchor.row else first
                if not self.names_client(value, anchor, pinned):
                    reasons.append(
                        f"{where} calls {overload.signature} with {first or 'nothing'} first,"
                        f" not {anchor.describe()}: its client is not known to be this one"
                    )
        return reasons, touches

    @staticmethod
    def names_client(expression: str, anchor: Anchor, pinned: set[str]) -> bool:
        """Whether ``expression`` is the anchor's client: the anchor itself, or the client_id of
        an alias tied to it."""
        if expression in anchor.names:
            return True
        alias, _, column = expression.partition(".")
        return column == "client_id" and alias in pinned


def function_findings(catalog: Catalog, declarations: Declarations) -> list[str]:
    """Functions: every one that takes p_client_id first is declared; a declared single-shard
    one takes p_client_id uuid first and reads or writes only that client's rows."""
    linter = Linter(catalog, declarations.tables)
    found: list[str] = []
    for name in sorted(declarations.functions):
        if name not in catalog.functions:
            found.append(f"docs/scaling.md lists the function {name}, which does not exist")
    for name, overloads in sorted(catalog.functions.items()):
        takes_client = any(f.args[:1] == ("p_client_id",) for f in overloads)
        status = declarations.functions.get(name)
        if status is None:
            if takes_client:
                found.append(
                    f"{name} takes p_client_id first but is in no row of docs/scaling.md's"
                    " function table: say whether it runs on one client's shard (single-shard),"
                    " on the coordinator over several clients or reference tables (coordinator),"
                    " or needs a change first (change), and why"
                )
            continue
        if status != "single-shard":
            continue
        for function in overloads:
            if function.args[:1] != ("p_client_id",) or function.arg_types[:1] != ("uuid",):
                found.append(
                    f"{function.signature} is declared single-shard but does not take"
                    " p_client_id uuid first: Citus routes a delegated call by that argument"
                )
                continue
            found.extend(linter.shard_local(function).reasons)
    return found


def trigger_findings(catalog: Catalog, declarations: Declarations) -> list[str]:
    """Triggers: every trigger function on a table of the map is declared; one declared
    unchanged runs on the shard of the row that fired it, touching only that client's rows."""
    linter = Linter(catalog, declarations.tables)
    found: list[str] = []
    attached: dict[str, list[Trigger]] = {}
    for trigger in catalog.triggers:
        attached.setdefault(trigger.function, []).append(trigger)
    for name in sorted(set(declarations.triggers) - set(attached)):
        found.append(f"docs/scaling.md lists the trigger function {name}, which fires on no table")
    for name, triggers in sorted(attached.items()):
        status = declarations.triggers.get(name)
        if status is None:
            on = ", ".join(sorted({f"{t.table} ({t.name})" for t in triggers}))
            found.append(
                f"trigger function {name} (on {on}) is in no row of docs/scaling.md's trigger"
                " table: say whether it runs unchanged on a shard or needs a change, and why"
            )
            continue
        if status != "unchanged":
            continue
        for function in catalog.functions.get(name, []):
            for trigger in triggers:
                kind = linter.kind(trigger.table)
                if kind == "local":
                    continue
                anchor = (
                    TRIGGER_ANCHOR if trigger.row_level and kind == "distributed" else NO_ANCHOR
                )
                result = linter.analyse(function, anchor)
                where = f"{name} ({trigger.name} on {trigger.table})"
                if result.touches and kind == "reference":
                    found.append(
                        f"{where} fires on a reference table, on every node, and reads or"
                        " writes distributed tables: it needs a change"
                    )
                elif result.touches and not trigger.row_level:
                    found.append(
                        f"{where} is a statement-level trigger that reads or writes distributed"
                        " tables: its queries name no one client, so on a shard Citus refuses"
                        " them; it needs a change"
                    )
                found.extend(f"{where}: {reason}" for reason in result.reasons)
    return sorted(set(found))


def distribute_findings(text: str, catalog: Catalog, declarations: Declarations) -> list[str]:
    """The SQL block of docs/scaling.md: each reference table once with create_reference_table,
    each distributed table once with its column, all in one co-location group started by the
    first, no local table, and create_distributed_function only for single-shard functions."""
    block = re.search(
        r"<!-- lint:distribute -->\n```sql\n(.*?)```\n<!-- /lint:distribute -->", text, re.S
    )
    if block is None:
        return ["docs/scaling.md has no ```sql block between <!-- lint:distribute --> markers"]
    sql = block.group(1)
    found: list[str] = []
    tables = declarations.tables
    references_made = re.findall(r"create_reference_table\('([^']+)'\)", sql)
    distributed_made = re.findall(
        r"create_distributed_table\('([^']+)',\s*'([^']+)'(?:,\s*colocate_with\s*=>\s*'([^']+)')?\)",
        sql,
    )
    made = references_made + [t for t, _, _ in distributed_made]
    for table in sorted({t for t in made if made.count(t) > 1}):
        found.append(f"the SQL block of docs/scaling.md distributes {table} more than once")
    for name, decl in sorted(tables.items()):
        if decl.kind == "reference" and name not in references_made:
            found.append(
                f"the SQL block of docs/scaling.md lacks SELECT create_reference_table('{name}')"
            )
        if decl.kind == "distributed" and name not in [t for t, _, _ in distributed_made]:
            found.append(
                f"the SQL block of docs/scaling.md lacks SELECT create_distributed_table('{name}',"
                f" '{decl.column}', colocate_with => ...)"
            )
    for table in references_made:
        if table in tables and tables[table].kind != "reference":
            found.append(
                f"the SQL block makes {table} a reference table; the map says {tables[table].kind}"
            )
    group = distributed_made[0][0] if distributed_made else None
    for i, (table, column, colocate) in enumerate(distributed_made):
        made_decl = tables.get(table)
        if made_decl is None or made_decl.kind != "distributed":
            found.append(
                f"the SQL block distributes {table}; the map says"
                f" {made_decl.kind if made_decl else 'nothing about it'}"
            )
            continue
        if column != made_decl.column:
            found.append(
                f"the SQL block distributes {table} by {column}; the map says {made_decl.column}"
            )
        expected = "none" if i == 0 else group
        if colocate != expected:
            found.append(
                f"the SQL block distributes {table} with colocate_with => '{colocate}': use"
                f" '{expected}', so every tenant table is in one co-location group"
            )
    first_table = min((sql.find(f"('{t}'") for t in made), default=-1)
    drop, add = sql.find("DROP CONSTRAINT"), sql.rfind("ADD CONSTRAINT")
    if made and not (0 <= drop < first_table and add > max(sql.rfind(f"('{t}'") for t in made)):
        found.append(
            "the SQL block must drop the foreign keys before the first table is distributed and"
            " add them back after the last (Citus refuses a key to a table not yet distributed)"
        )
    signatures = {f.signature: f for fs in catalog.functions.values() for f in fs}
    for signature, argument, colocate in re.findall(
        r"create_distributed_function\('([^']+)',\s*'([^']+)',\s*colocate_with\s*=>\s*'([^']+)'",
        sql,
    ):
        function = signatures.get(signature)
        if function is None:
            found.append(
                f"the SQL block distributes the function {signature}, which does not exist"
            )
            continue
        if declarations.functions.get(function.name) != "single-shard":
            found.append(
                f"the SQL block delegates {signature}, which the function table does not mark"
                " single-shard: a delegated function must name its client in every statement"
            )
        if argument != "p_client_id":
            found.append(f"the SQL block delegates {signature} by {argument}: use 'p_client_id'")
        if tables.get(colocate, TableDecl(colocate, "", None)).kind != "distributed":
            found.append(
                f"the SQL block delegates {signature} colocated with {colocate}: name a"
                " distributed table of the group"
            )
    return found


def lint(conn: psycopg.Connection[Any], text: str | None = None) -> list[str]:
    """Everything the lint finds in docs/scaling.md (or ``text``) against the catalog of
    ``conn``: malformed declarations, keys, the SQL block, functions, triggers."""
    text = DOC.read_text() if text is None else text
    declarations = read_declarations(text)
    catalog = read_catalog(conn)
    return [
        *declarations.problems,
        *key_findings(catalog, declarations.tables),
        *distribute_findings(text, catalog, declarations),
        *function_findings(catalog, declarations),
        *trigger_findings(catalog, declarations),
    ]


def numbered(findings: Iterable[str]) -> str:
    return "\n".join(f"{i}. {f}" for i, f in enumerate(findings, 1))
