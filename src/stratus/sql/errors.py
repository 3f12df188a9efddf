"""SQL errors. All are catalog errors, so the API turns them into problem documents (and the
CLI into messages) the same way as every other refusal."""

from __future__ import annotations

from stratus.catalog.errors import CatalogError, InvalidArgument


class SqlSyntaxError(InvalidArgument):
    """The statement does not parse; ``line`` and ``column`` (1-based) say where."""

    error_code = "PARSE_SYNTAX_ERROR"

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        where = f" (line {line}, column {column})" if line is not None else ""
        super().__init__(f"syntax error{where}: {message}", parameter="statement")
        self.line = line
        self.column = column
        self.reason = message


class UnsupportedStatement(InvalidArgument):
    """A statement, clause or type Stratus does not run; the message names the construct."""

    error_code = "UNSUPPORTED_STATEMENT"

    def __init__(self, construct: str) -> None:
        super().__init__(f"not supported: {construct}", parameter="statement")
        self.construct = construct


class SqlExecutionError(InvalidArgument):
    """The engine refused the statement (unknown column, bad cast, ...)."""

    error_code = "SQL_EXECUTION_ERROR"


class SqlTimeout(CatalogError):
    """The statement ran longer than STRATUS_SQL_TIMEOUT_SECONDS and was cancelled."""

    status = 504
    error_code = "DEADLINE_EXCEEDED"


__all__ = ["SqlExecutionError", "SqlSyntaxError", "SqlTimeout", "UnsupportedStatement"]
