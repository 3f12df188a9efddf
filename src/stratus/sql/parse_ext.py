"""Parsing of the DML, view, time-travel and maintenance statements.

sqlglot parses ``MERGE``, ``UPDATE``, ``DELETE``, ``CREATE VIEW`` and ``VERSION AS OF``; their
trees are checked and classified here. ``DESCRIBE HISTORY``, ``RESTORE``, ``OPTIMIZE`` and
``VACUUM`` (raw commands to sqlglot) are parsed from its tokens with the cursor of
:mod:`stratus.sql.parse`. Every refusal names the construct.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp
from sqlglot.tokens import Token, TokenType

from stratus.sql import parse as p
from stratus.sql.errors import SqlSyntaxError, UnsupportedStatement


@dataclass
class Clause:
    """One WHEN clause of a MERGE."""

    match: str  # "matched" | "not_matched" | "not_matched_by_source"
    action: str  # "update" | "delete" | "insert"
    condition: exp.Expr | None = None
    sets: list[tuple[str, exp.Expr]] | None = None  # None: UPDATE SET * / INSERT *
    columns: list[str] | None = None  # INSERT (columns); None with values: every column
    values: list[exp.Expr] | None = None


@dataclass
class Version:
    """``VERSION AS OF n`` or ``TIMESTAMP AS OF 'text'``."""

    number: int | None = None
    timestamp: str | None = None

    def text(self) -> str:
        if self.number is not None:
            return f"VERSION AS OF {self.number}"
        return f"TIMESTAMP AS OF '{self.timestamp}'"


def check_version(table: exp.Table) -> Version:
    """The version a time-travel reference asks for (a literal), or UnsupportedStatement."""
    version = table.args.get("version")
    assert version is not None
    what = str(version.this).upper()
    value = version.expression
    if str(version.args.get("kind") or "").upper() != "AS OF":
        raise UnsupportedStatement(f"{what} {version.args.get('kind')} (only AS OF)")
    if what == "VERSION":
        if not isinstance(value, exp.Literal) or value.is_string or not value.this.isdigit():
            raise UnsupportedStatement("VERSION AS OF something other than a version number")
        return Version(number=int(value.this))
    if what == "TIMESTAMP":
        if isinstance(value, exp.Cast) and isinstance(value.this, exp.Literal):
            value = value.this
        if not isinstance(value, exp.Literal) or not value.is_string:
            raise UnsupportedStatement("TIMESTAMP AS OF something other than a 'timestamp'")
        return Version(timestamp=value.this)
    raise UnsupportedStatement(f"time travel by {what}")


# ---- DML ----------------------------------------------------------------------------------------
def _target(table: exp.Expr, what: str) -> tuple[tuple[str, ...], str]:
    if not isinstance(table, exp.Table):
        raise UnsupportedStatement(f"{what} into something other than a table")
    if table.args.get("version") is not None:
        raise UnsupportedStatement(f"{what} of a table VERSION AS OF (RESTORE it first)")
    parts = p.table_parts(table)
    if len(parts) > 3:
        raise UnsupportedStatement(f"name {table.sql('databricks')} (at most 3 parts)")
    return parts, table.alias_or_name


def _sets(items: list[exp.Expr], what: str) -> list[tuple[str, exp.Expr]]:
    out: list[tuple[str, exp.Expr]] = []
    for item in items:
        if not isinstance(item, exp.EQ) or not isinstance(item.this, exp.Column):
            raise UnsupportedStatement(f"{what} SET {item.sql('databricks')[:40]}")
        out.append((item.this.name, item.expression))
    return out


def _queries_in(tree: exp.Expr) -> None:
    """Subqueries in conditions and values read tables too: checked like any query."""
    for q in tree.find_all(exp.Query):
        p.check_query(q)


def _refuse(tree: exp.Expr, verb: str, clauses: tuple[str, ...]) -> None:
    """UnsupportedStatement naming the first of ``clauses`` the statement has."""
    for key in clauses:
        if tree.args.get(key):
            raise UnsupportedStatement(f"{verb} ... {key.rstrip('_').upper()}")


def dml(tree: exp.Expr, text: str) -> p.Statement:
    if isinstance(tree, exp.Update):
        _refuse(tree, "UPDATE", ("from", "from_", "joins", "returning", "order", "limit", "with"))
        name, alias = _target(tree.this, "UPDATE")
        sets = _sets(list(tree.expressions), "UPDATE")
        where = tree.args.get("where")
        _queries_in(tree)
        return p.Statement(
            p.UPDATE,
            text,
            tree,
            {"name": name, "alias": alias, "sets": sets, "where": where.this if where else None},
        )
    if isinstance(tree, exp.Delete):
        _refuse(
            tree, "DELETE", ("using", "returning", "order", "limit", "with", "tables", "cluster")
        )
        name, alias = _target(tree.this, "DELETE")
        where = tree.args.get("where")
        _queries_in(tree)
        return p.Statement(
            p.DELETE,
            text,
            tree,
            {"name": name, "alias": alias, "where": where.this if where else None},
        )
    assert isinstance(tree, exp.Merge)
    if tree.args.get("returning") or tree.args.get("with"):
        raise UnsupportedStatement("MERGE ... RETURNING / WITH")
    name, alias = _target(tree.this, "MERGE")
    source = tree.args.get("using")
    if isinstance(source, exp.Table):
        if not isinstance(source.this, exp.Identifier):
            raise UnsupportedStatement(f"MERGE ... USING {source.this.sql('databricks')[:40]}")
        if source.args.get("version") is not None:
            check_version(source)
        source_alias = source.alias_or_name
    elif isinstance(source, exp.Subquery):
        p.check_query(source.this)
        source_alias = source.alias_or_name
        if not source_alias:
            raise SqlSyntaxError("MERGE ... USING (subquery) needs an alias")
    else:
        raise UnsupportedStatement("MERGE ... USING something other than a table or subquery")
    on = tree.args.get("on")
    if on is None or tree.args.get("using_cond"):
        raise UnsupportedStatement("MERGE without an ON condition")
    clauses: list[Clause] = []
    whens = tree.args.get("whens")
    for when in whens.expressions if whens else []:
        matched = bool(when.args.get("matched"))
        by_source = bool(when.args.get("source"))
        match = "matched" if matched else ("not_matched_by_source" if by_source else "not_matched")
        then = when.args.get("then")
        condition = when.args.get("condition")
        if isinstance(then, exp.Var) and then.name.upper() == "DELETE":
            if match == "not_matched":
                raise SqlSyntaxError(
                    "WHEN NOT MATCHED THEN DELETE: a missing row cannot be deleted"
                )
            clauses.append(Clause(match, "delete", condition))
        elif isinstance(then, exp.Update):
            if match == "not_matched":
                raise SqlSyntaxError("WHEN NOT MATCHED THEN UPDATE: use INSERT")
            star = len(then.expressions) == 1 and isinstance(then.expressions[0], exp.Star)
            if star and match != "matched":
                raise UnsupportedStatement("WHEN NOT MATCHED BY SOURCE THEN UPDATE SET *")
            assigned = None if star else _sets(list(then.expressions), "MERGE ... UPDATE")
            clauses.append(Clause(match, "update", condition, assigned))
        elif isinstance(then, exp.Insert):
            if match != "not_matched":
                raise SqlSyntaxError("INSERT is only for WHEN NOT MATCHED")
            if isinstance(then.this, exp.Star):
                clauses.append(Clause(match, "insert", condition))
            else:
                cols = then.this.expressions if isinstance(then.this, exp.Tuple) else None
                vals = then.expression
                values = list(vals.expressions) if isinstance(vals, exp.Tuple) else None
                if values is None:
                    raise UnsupportedStatement("MERGE ... INSERT without VALUES (...)")
                columns = [c.name for c in cols] if cols is not None else None
                if columns is not None and len(columns) != len(values):
                    raise SqlSyntaxError(
                        f"INSERT names {len(columns)} column(s) but gives {len(values)} value(s)"
                    )
                clauses.append(Clause(match, "insert", condition, columns=columns, values=values))
        else:
            raise UnsupportedStatement(f"MERGE ... THEN {then.sql('databricks')[:40]}")
    if not clauses:
        raise SqlSyntaxError("MERGE needs at least one WHEN clause")
    _queries_in(tree)
    return p.Statement(
        p.MERGE,
        text,
        tree,
        {
            "name": name,
            "alias": alias,
            "source": source,
            "source_alias": source_alias,
            "on": on,
            "clauses": clauses,
        },
    )


# ---- views --------------------------------------------------------------------------------------
def create_view(tree: exp.Create, text: str) -> p.Statement:
    target = tree.this
    columns: list[str] | None = None
    if isinstance(target, exp.Schema):
        columns = []
        for item in target.expressions:
            if not isinstance(item, exp.Identifier | exp.Column):
                raise UnsupportedStatement(f"view column {item.sql('databricks')[:40]}")
            columns.append(item.name)
        target = target.this
    if not isinstance(target, exp.Table):
        raise SqlSyntaxError("CREATE VIEW needs a view name")
    if tree.args.get("replace") and tree.args.get("exists"):
        raise SqlSyntaxError("CREATE OR REPLACE VIEW IF NOT EXISTS: choose one")
    for flag in ("materialized", "temporary"):
        if tree.args.get(flag) or flag.upper() in text.upper().split(" AS ")[0].split():
            raise UnsupportedStatement(f"CREATE {flag.upper()} VIEW")
    comment = None
    props = tree.args.get("properties")
    for prop in props.expressions if props else []:
        if isinstance(prop, exp.SchemaCommentProperty):
            comment = prop.this.name
        elif isinstance(prop, exp.TemporaryProperty):
            raise UnsupportedStatement("CREATE TEMPORARY VIEW")
        else:
            raise UnsupportedStatement(f"CREATE VIEW ... {prop.sql('databricks')[:40]}")
    query = tree.expression
    if not isinstance(query, exp.Query) or isinstance(query, exp.Values):
        raise UnsupportedStatement("CREATE VIEW ... AS of something other than a query")
    p.check_query(query)
    p.no_placeholders(tree, "CREATE VIEW")
    for t in query.find_all(exp.Table):
        if t.args.get("version") is not None:
            raise UnsupportedStatement("a view over a table VERSION AS OF")
    return p.Statement(
        p.CREATE_VIEW,
        text,
        tree,
        {
            "name": p.table_parts(target),
            "replace": bool(tree.args.get("replace")),
            "if_not_exists": bool(tree.args.get("exists")),
            "columns": columns,
            "comment": comment,
            "query": query,
        },
    )


# ---- token-parsed commands ----------------------------------------------------------------------
def _number(cur: p._Cursor, what: str) -> str:
    tok = cur.peek()
    if tok is None or tok.token_type != TokenType.NUMBER:
        raise cur.error(what)
    cur.i += 1
    return tok.text


def command(tokens: list[Token], text: str) -> p.Statement:
    if len(tokens) == 2 and tokens[0].token_type == TokenType.COMMAND:
        tokens = [tokens[0], *p.tokenize(tokens[1].text)]  # sqlglot keeps the rest as text
    cur = p._Cursor(tokens)
    first = cur.word("a statement").upper()
    if first == "DESCRIBE":
        cur.expect("HISTORY")
        name = cur.name("a table name")
        limit = None
        if cur.accept("LIMIT"):
            limit = int(_number(cur, "a row limit"))
        cur.end()
        return p.Statement(p.DESCRIBE_HISTORY, text, None, {"name": name, "limit": limit})
    if first == "RESTORE":
        cur.accept("TABLE")
        name = cur.name("a table name")
        cur.expect("TO")
        if cur.accept("VERSION", "AS", "OF"):
            version: int | None = int(_number(cur, "a version number"))
            timestamp = None
        elif cur.accept("TIMESTAMP", "AS", "OF"):
            version, timestamp = None, cur.string("a timestamp")
        else:
            raise cur.error("VERSION AS OF n or TIMESTAMP AS OF 'timestamp'")
        cur.end()
        return p.Statement(
            p.RESTORE, text, None, {"name": name, "version": version, "timestamp": timestamp}
        )
    if first == "OPTIMIZE":
        name = cur.name("a table name")
        if cur.at("WHERE"):
            raise UnsupportedStatement("OPTIMIZE ... WHERE (the whole table is compacted)")
        zorder: list[str] | None = None
        if cur.accept("ZORDER", "BY"):
            zorder = []
            parens = cur.is_punct(TokenType.L_PAREN)
            if parens:
                cur.i += 1
            while True:
                zorder.append(cur.name_part("a column"))
                if cur.is_punct(TokenType.COMMA):
                    cur.i += 1
                    continue
                break
            if parens:
                cur.punct(TokenType.R_PAREN, ")")
        cur.end()
        return p.Statement(p.OPTIMIZE, text, None, {"name": name, "zorder": zorder})
    if first == "VACUUM":
        name = cur.name("a table name")
        hours: float | None = None
        dry_run = False
        if cur.accept("RETAIN"):
            hours = float(_number(cur, "a number of hours"))
            cur.expect("HOURS")
        if cur.accept("DRY", "RUN"):
            dry_run = True
        if cur.at("LITE") or cur.at("FULL") or cur.at("USING"):
            word = cur.peek()  # at() matched it, so it is there
            raise UnsupportedStatement(f"VACUUM ... {word.text.upper() if word else ''}")
        cur.end()
        return p.Statement(
            p.VACUUM, text, None, {"name": name, "retain_hours": hours, "dry_run": dry_run}
        )
    raise UnsupportedStatement(first)


__all__ = ["Clause", "Version", "check_version", "command", "create_view", "dml"]
