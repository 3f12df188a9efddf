"""Databricks SQL text -> one classified :class:`Statement`.

sqlglot (``read="databricks"``) tokenizes every statement and parses most of them. The few it
only keeps as raw commands (SHOW, REVOKE, ALTER ... ALTER COLUMN ... SET TAGS) are parsed here
from sqlglot's tokens by a small recursive-descent parser, so no statement is ever handled as
text. Statements are split on the tokenizer's semicolons, so ``;`` inside strings and comments
is safe (:func:`split_statements`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from sqlglot import exp
from sqlglot.dialects.databricks import Databricks
from sqlglot.errors import ErrorLevel, ParseError, TokenError
from sqlglot.tokens import Token, TokenType

from stratus.sql.errors import SqlSyntaxError, UnsupportedStatement

DIALECT = Databricks()
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECURABLES = {
    "CATALOG": "catalog",
    "SCHEMA": "schema",
    "DATABASE": "schema",
    "TABLE": "table",
    "VOLUME": "volume",
}

# statement kinds (the response's ``statement_type``)
SELECT = "SELECT"
CREATE_SCHEMA = "CREATE_SCHEMA"
CREATE_TABLE = "CREATE_TABLE"
CREATE_TABLE_AS_SELECT = "CREATE_TABLE_AS_SELECT"
INSERT = "INSERT"
DROP_TABLE = "DROP_TABLE"
SET_TAGS = "SET_TAGS"
UNSET_TAGS = "UNSET_TAGS"
GRANT = "GRANT"
REVOKE = "REVOKE"
DESCRIBE = "DESCRIBE"
SHOW_TABLES = "SHOW_TABLES"
SHOW_SCHEMAS = "SHOW_SCHEMAS"
# DML, views, time travel and maintenance (stratus.sql.parse_ext parses them)
MERGE = "MERGE"
UPDATE = "UPDATE"
DELETE = "DELETE"
CREATE_VIEW = "CREATE_VIEW"
DROP_VIEW = "DROP_VIEW"
DESCRIBE_HISTORY = "DESCRIBE_HISTORY"
RESTORE = "RESTORE"
OPTIMIZE = "OPTIMIZE"
VACUUM = "VACUUM"
_TOKEN_PARSED = ("SHOW", "GRANT", "REVOKE", "ALTER", "RESTORE", "OPTIMIZE", "VACUUM")


@dataclass
class Statement:
    kind: str
    text: str
    ast: exp.Expr | None = None  # sqlglot's tree (for the kinds sqlglot parses)
    args: dict[str, Any] = field(default_factory=dict)  # the rest (token-parsed kinds)


# ---- tokens and splitting ---------------------------------------------------------------------
def tokenize(text: str) -> list[Token]:
    try:
        return DIALECT.tokenize(text)
    except TokenError as exc:
        line, col = _position_of_token_error(text, str(exc))
        raise SqlSyntaxError("unterminated string, identifier or comment", line, col) from None


def _position_of_token_error(text: str, message: str) -> tuple[int | None, int | None]:
    # sqlglot's message quotes the text up to where it stopped: "Error tokenizing '...'"
    m = re.search(r"Error tokenizing '(.*)'", message, re.S)
    if not m:
        return None, None
    upto = m.group(1)
    line = upto.count("\n") + 1
    return line, len(upto) - (upto.rfind("\n") + 1)


def _split(tokens: list[Token]) -> list[list[Token]]:
    out: list[list[Token]] = [[]]
    for tok in tokens:
        if tok.token_type == TokenType.SEMICOLON:
            out.append([])
        else:
            out[-1].append(tok)
    return [s for s in out if s]


def split_statements(text: str) -> list[str]:
    """The statements of a script, in order (semicolons in strings and comments are safe)."""
    return [text[s[0].start : s[-1].end + 1] for s in _split(tokenize(text))]


# ---- parsing ----------------------------------------------------------------------------------
def parse(text: str) -> Statement:
    """One statement, parsed and classified; SqlSyntaxError or UnsupportedStatement if not.
    The statement's tree is the caller's to change (parses are cached, copies handed out)."""
    tokens, tree = _parsed(text)
    first = tokens[0].text.upper()
    if first == "SHOW":
        return _show(tokens, text)
    if first in ("GRANT", "REVOKE"):
        return _grant(tokens, text)
    if first == "ALTER":
        return _alter(tokens, text)
    if tree is None:
        from stratus.sql import parse_ext

        return parse_ext.command(tokens, text)
    assert tree is not None
    return _classify(tree.copy(), text, tokens)


@functools.lru_cache(maxsize=512)
def _parsed(text: str) -> tuple[list[Token], exp.Expr | None]:
    """The tokens of the one statement in ``text`` and sqlglot's tree of it (None for the
    statements parsed here from tokens). Cached: repeated statements skip sqlglot's parser."""
    statements = _split(tokenize(text))
    if not statements:
        raise SqlSyntaxError("empty statement")
    if len(statements) > 1:
        raise UnsupportedStatement(
            f"multiple statements ({len(statements)}): send one statement per request"
        )
    tokens = statements[0]
    if tokens[0].text.upper() in _TOKEN_PARSED or _describe_history(tokens):
        return tokens, None
    try:
        trees = DIALECT.parser(error_level=ErrorLevel.RAISE).parse(tokens, text)
    except ParseError as exc:
        err = (exc.errors or [{}])[0]
        raise SqlSyntaxError(
            str(err.get("description") or exc).split(". Line")[0],
            err.get("line"),
            err.get("col"),
        ) from None
    tree = trees[0] if trees else None
    if tree is None:
        raise SqlSyntaxError("empty statement")
    return tokens, tree


def _describe_history(tokens: list[Token]) -> bool:
    return (
        len(tokens) > 1
        and tokens[0].text.upper() == "DESCRIBE"
        and tokens[1].text.upper() == "HISTORY"
    )


def _construct(tree: exp.Expr, tokens: list[Token]) -> str:
    words = [t.text.upper() for t in tokens[:3] if _WORD.fullmatch(t.text)]
    if isinstance(tree, exp.Command):
        return " ".join(words[:2]) or str(tree.this).upper()
    return " ".join(words[:2]) or tree.key.upper()


def _classify(tree: exp.Expr, text: str, tokens: list[Token]) -> Statement:
    if isinstance(tree, exp.Query) and not isinstance(tree, exp.Values):
        check_query(tree)
        return Statement(SELECT, text, tree)
    if isinstance(tree, exp.Merge | exp.Update | exp.Delete):
        from stratus.sql import parse_ext

        return parse_ext.dml(tree, text)
    if isinstance(tree, exp.Create) and str(tree.args.get("kind") or "").upper() == "VIEW":
        from stratus.sql import parse_ext

        return parse_ext.create_view(tree, text)
    if isinstance(tree, exp.Create):
        return _create(tree, text, tokens)
    if isinstance(tree, exp.Insert):
        return _insert(tree, text)
    if isinstance(tree, exp.Drop):
        kind = str(tree.args.get("kind") or "").upper()
        if kind not in ("TABLE", "VIEW"):
            raise UnsupportedStatement(f"DROP {kind}".strip())
        tables = tree.args.get("tables") or []
        if len(tables) != 1:
            raise UnsupportedStatement(f"DROP {kind} of several at once")
        no_placeholders(tree, f"DROP {kind}")
        return Statement(
            DROP_TABLE if kind == "TABLE" else DROP_VIEW,
            text,
            tree,
            {"name": table_parts(tables[0]), "if_exists": bool(tree.args.get("exists"))},
        )
    if isinstance(tree, exp.Describe):
        kind = str(tree.args.get("kind") or "TABLE").upper()
        target = tree.this
        if kind != "TABLE" or not isinstance(target, exp.Table):
            raise UnsupportedStatement(f"DESCRIBE {kind if kind != 'TABLE' else 'of a query'}")
        return Statement(DESCRIBE, text, tree, {"name": table_parts(target)})
    raise UnsupportedStatement(_construct(tree, tokens))


def no_placeholders(tree: exp.Expr, what: str) -> None:
    """Refuse ``?``/``:name`` parameters in ``what`` (a statement that takes none)."""
    if tree.find(exp.Placeholder) is not None:
        raise UnsupportedStatement(f"parameters in {what} (only in queries and INSERT values)")


def table_parts(table: exp.Table) -> tuple[str, ...]:
    """The name parts of a table reference (``main.weather.hourly`` -> three)."""
    if not isinstance(table.this, exp.Identifier):
        raise UnsupportedStatement(f"table reference {table.sql('databricks')}")
    return tuple(p.name for p in table.parts)


def check_query(query: exp.Expr) -> None:
    """Only catalog tables (and CTEs, subqueries, VALUES, UNNEST) may be read: no table
    functions, no file paths (they would bypass grants and masks), no time travel."""
    for table in query.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            raise UnsupportedStatement(
                f"table function {table.this.sql('databricks')[:60]} (read catalog tables)"
            )
        if table.args.get("version") is not None:
            from stratus.sql import parse_ext

            parse_ext.check_version(table)
        if len(table.parts) > 3:
            raise UnsupportedStatement(f"name {table.sql('databricks')} (at most 3 parts)")
    for func in query.find_all(exp.Func):
        name = (func.name if isinstance(func, exp.Anonymous) else func.sql_name()).lower()
        if name.startswith(_DENIED_PREFIXES) or name in _DENIED:
            raise UnsupportedStatement(f"function {name}")


# engine functions that read files, settings or metadata: never callable from SQL
_DENIED_PREFIXES = ("read_", "duckdb_", "pragma_", "parquet_", "sniff_", "iceberg_", "delta_")
_DENIED = frozenset(
    {
        "glob",
        "query",
        "query_table",
        "current_setting",
        "getenv",
        "which_secret",
        "load",
        "install",
        "read_files",
        "readcsv",
        "readparquet",
    }
)


def _create(tree: exp.Create, text: str, tokens: list[Token]) -> Statement:
    kind = str(tree.args.get("kind") or "").upper()
    props = tree.args.get("properties")
    properties = list(props.expressions) if props else []
    if kind in ("SCHEMA", "DATABASE"):
        target = tree.this
        parts = tuple(p.name for p in target.parts) if isinstance(target, exp.Table) else ()
        if not 1 <= len(parts) <= 2:
            raise SqlSyntaxError("CREATE SCHEMA needs [catalog.]schema")
        comment = None
        for p in properties:
            if isinstance(p, exp.SchemaCommentProperty):
                comment = p.this.name
            else:
                raise UnsupportedStatement(f"CREATE SCHEMA ... {p.sql('databricks')[:40]}")
        no_placeholders(tree, "CREATE SCHEMA")
        return Statement(
            CREATE_SCHEMA,
            text,
            tree,
            {"name": parts, "if_not_exists": bool(tree.args.get("exists")), "comment": comment},
        )
    if kind != "TABLE":
        raise UnsupportedStatement(f"CREATE {kind or _construct(tree, tokens)}")
    target = tree.this
    columns: list[exp.ColumnDef] = []
    if isinstance(target, exp.Schema):
        for item in target.expressions:
            if not isinstance(item, exp.ColumnDef):
                raise UnsupportedStatement(f"table constraint {item.sql('databricks')[:40]}")
            columns.append(item)
        target = target.this
    if not isinstance(target, exp.Table):
        raise SqlSyntaxError("CREATE TABLE needs a table name")
    args: dict[str, Any] = {
        "name": table_parts(target),
        "if_not_exists": bool(tree.args.get("exists")),
        "replace": bool(tree.args.get("replace")),
        "columns": columns,
        "partition_by": [],
        "comment": None,
        "properties": {},
    }
    for p in properties:
        if isinstance(p, exp.PartitionedByProperty):
            cols = p.this.expressions if isinstance(p.this, exp.Schema) else [p.this]
            for c in cols:
                if not isinstance(c, exp.Identifier | exp.Column):
                    raise UnsupportedStatement("PARTITIONED BY with column definitions")
                args["partition_by"].append(c.name)
        elif isinstance(p, exp.SchemaCommentProperty):
            args["comment"] = p.this.name
        elif isinstance(p, exp.FileFormatProperty):
            fmt = p.this.name.upper()
            if fmt != "DELTA":
                raise UnsupportedStatement(f"USING {fmt} (tables are Delta tables)")
        elif isinstance(p, exp.Property) and isinstance(p.this, exp.Literal):
            args["properties"][p.this.name] = p.args["value"].name
        else:
            raise UnsupportedStatement(f"CREATE TABLE ... {p.sql('databricks')[:40]}")
    query = tree.expression
    if query is not None:
        if columns:
            raise UnsupportedStatement("CREATE TABLE with both a column list and AS SELECT")
        if not isinstance(query, exp.Query) or isinstance(query, exp.Values):
            raise UnsupportedStatement("CREATE TABLE ... AS of something other than a query")
        check_query(query)
        args["query"] = query
        return Statement(CREATE_TABLE_AS_SELECT, text, tree, args)
    if not columns:
        raise SqlSyntaxError("CREATE TABLE needs columns or AS SELECT")
    for c in columns:
        for constraint in c.constraints:
            if not isinstance(
                constraint.kind, exp.NotNullColumnConstraint | exp.CommentColumnConstraint
            ):
                raise UnsupportedStatement(
                    f"column constraint {constraint.sql('databricks')[:40]} (NOT NULL and "
                    "COMMENT are supported)"
                )
    no_placeholders(tree, "CREATE TABLE")
    return Statement(CREATE_TABLE, text, tree, args)


def _insert(tree: exp.Insert, text: str) -> Statement:
    if tree.args.get("overwrite"):
        raise UnsupportedStatement("INSERT OVERWRITE")
    if tree.args.get("by_name"):
        raise UnsupportedStatement("INSERT ... BY NAME")
    target = tree.this
    columns: list[str] | None = None
    if isinstance(target, exp.Schema):
        columns = [c.name for c in target.expressions]
        target = target.this
    if not isinstance(target, exp.Table):
        raise UnsupportedStatement("INSERT into something other than a table")
    if target.args.get("partition") is not None or tree.args.get("partition"):
        raise UnsupportedStatement("INSERT ... PARTITION (...)")
    source = tree.expression
    if isinstance(source, exp.Values):
        pass
    elif isinstance(source, exp.Query):
        check_query(source)
    else:
        raise UnsupportedStatement("INSERT of something other than VALUES or a query")
    for key in ("where", "returning", "conflict", "alternative"):
        if tree.args.get(key):
            raise UnsupportedStatement(f"INSERT ... {key.upper()}")
    return Statement(INSERT, text, tree, {"name": table_parts(target), "columns": columns})


# ---- the token-parsed statements --------------------------------------------------------------
class _Cursor:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0

    def peek(self, offset: int = 0) -> Token | None:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else None

    def is_word(self, tok: Token | None) -> TypeGuard[Token]:
        return (
            tok is not None
            and tok.token_type not in (TokenType.STRING, TokenType.IDENTIFIER)
            and bool(_WORD.fullmatch(tok.text))
        )

    def at(self, *words: str) -> bool:
        for k, word in enumerate(words):
            tok = self.peek(k)
            if not self.is_word(tok) or tok.text.upper() != word:
                return False
        return True

    def accept(self, *words: str) -> bool:
        if self.at(*words):
            self.i += len(words)
            return True
        return False

    def error(self, expected: str) -> SqlSyntaxError:
        tok = self.peek()
        if tok is None:
            last = self.tokens[-1]
            return SqlSyntaxError(f"expected {expected} at the end", last.line, last.col + 1)
        return SqlSyntaxError(
            f"expected {expected}, found {tok.text!r}", tok.line, tok.col - len(tok.text) + 1
        )

    def expect(self, *words: str) -> None:
        if not self.accept(*words):
            raise self.error(" ".join(words))

    def word(self, what: str) -> str:
        tok = self.peek()
        if not self.is_word(tok):
            raise self.error(what)
        self.i += 1
        return tok.text

    def name_part(self, what: str) -> str:
        tok = self.peek()
        if tok is not None and tok.token_type == TokenType.IDENTIFIER:
            self.i += 1
            return tok.text
        return self.word(what)

    def name(self, what: str) -> tuple[str, ...]:
        parts = [self.name_part(what)]
        while (tok := self.peek()) is not None and tok.token_type == TokenType.DOT:
            self.i += 1
            parts.append(self.name_part(what))
        return tuple(parts)

    def punct(self, kind: TokenType, text: str) -> None:
        tok = self.peek()
        if tok is None or tok.token_type != kind:
            raise self.error(repr(text))
        self.i += 1

    def is_punct(self, kind: TokenType) -> bool:
        tok = self.peek()
        return tok is not None and tok.token_type == kind

    def string(self, what: str) -> str:
        tok = self.peek()
        if tok is None or tok.token_type != TokenType.STRING:
            raise self.error(f"{what} (a 'string')")
        self.i += 1
        return tok.text

    def end(self) -> None:
        if self.peek() is not None:
            raise self.error("the end of the statement")


def _show(tokens: list[Token], text: str) -> Statement:
    rest = tokens[1].text if len(tokens) > 1 else ""
    inner = tokenize(rest) if rest else []
    cur = _Cursor(inner)
    what = cur.word("TABLES or SCHEMAS").upper() if inner else ""
    if what not in ("TABLES", "SCHEMAS", "DATABASES"):
        raise UnsupportedStatement(f"SHOW {what}".strip())
    container = None
    if cur.accept("IN") or cur.accept("FROM"):
        container = cur.name("a schema" if what == "TABLES" else "a catalog")
    pattern = None
    if cur.accept("LIKE") or cur.is_punct(TokenType.STRING):
        pattern = cur.string("a pattern")
    cur.end()
    kind = SHOW_TABLES if what == "TABLES" else SHOW_SCHEMAS
    return Statement(kind, text, None, {"container": container, "pattern": pattern})


def _grant(tokens: list[Token], text: str) -> Statement:
    cur = _Cursor(tokens)
    verb = cur.word("GRANT or REVOKE").upper()
    privileges: list[str] = []
    while True:
        words = [cur.word("a privilege").upper()]
        while cur.is_word(cur.peek()) and not cur.at("ON"):
            words.append(cur.word("a privilege").upper())
        privilege = " ".join(words)
        privileges.append("ALL PRIVILEGES" if privilege == "ALL" else privilege)
        if cur.is_punct(TokenType.COMMA):
            cur.i += 1
            continue
        break
    cur.expect("ON")
    securable_type = "table"
    name: tuple[str, ...] = ()
    if cur.accept("METASTORE"):
        securable_type = "metastore"
    else:
        nxt = cur.peek(1)
        first = cur.peek()
        typed = cur.is_word(first) and first.text.upper() in _SECURABLES
        if typed and nxt is not None and nxt.token_type != TokenType.DOT:
            securable_type = _SECURABLES[cur.word("a securable type").upper()]
        name = cur.name("a securable name")
    cur.expect("TO" if verb == "GRANT" else "FROM")
    principals = [cur.name_part("a principal")]
    while cur.is_punct(TokenType.COMMA):
        cur.i += 1
        principals.append(cur.name_part("a principal"))
    cur.end()
    return Statement(
        GRANT if verb == "GRANT" else REVOKE,
        text,
        None,
        {
            "privileges": privileges,
            "securable_type": securable_type,
            "name": name,
            "principals": principals,
        },
    )


def _tag_list(cur: _Cursor, with_values: bool) -> dict[str, str | None]:
    cur.punct(TokenType.L_PAREN, "(")
    tags: dict[str, str | None] = {}
    while True:
        key = cur.string("a tag key")
        value = None
        if with_values and cur.is_punct(TokenType.EQ):
            cur.i += 1
            value = cur.string("a tag value")
        tags[key] = value
        if cur.is_punct(TokenType.COMMA):
            cur.i += 1
            continue
        break
    cur.punct(TokenType.R_PAREN, ")")
    return tags


def _alter(tokens: list[Token], text: str) -> Statement:
    cur = _Cursor(tokens)
    cur.expect("ALTER")
    kind = cur.word("TABLE, SCHEMA or CATALOG").upper()
    if kind not in _SECURABLES:
        raise UnsupportedStatement(f"ALTER {kind}")
    securable_type = _SECURABLES[kind]
    name = cur.name("a name")
    column = None
    if securable_type == "table" and (cur.accept("ALTER", "COLUMN") or cur.accept("ALTER")):
        column = cur.name_part("a column")
    if cur.accept("SET", "TAGS"):
        op, tags = SET_TAGS, _tag_list(cur, True)
    elif cur.accept("UNSET", "TAGS"):
        op, tags = UNSET_TAGS, _tag_list(cur, False)
    else:
        words = [t.text.upper() for t in tokens[cur.i : cur.i + 2]]
        construct = "ALTER COLUMN" if column else f"ALTER {kind}"
        raise UnsupportedStatement(f"{construct} ... {' '.join(words)}".strip())
    cur.end()
    return Statement(
        op,
        text,
        None,
        {"securable_type": securable_type, "name": name, "column": column, "tags": tags},
    )


__all__ = [
    "Statement",
    "check_query",
    "no_placeholders",
    "parse",
    "split_statements",
    "table_parts",
    "tokenize",
]
