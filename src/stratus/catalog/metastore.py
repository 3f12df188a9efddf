"""The metastore service: catalogs, schemas, tables, volumes, principals, tokens, grants, tags.

Plain Python over SQLAlchemy; no HTTP here. Every method takes or returns ORM objects or simple
values; the API layer turns them into Unity Catalog wire models. Changes that affect
authorization (grants, owners, principals, deletions) bump ``metastore.generation`` so the
authorizer's in-memory snapshot knows when to reload.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, delete, event, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from stratus.catalog import models as m
from stratus.catalog.errors import AlreadyExists, InvalidArgument, NotEmpty, NotFound
from stratus.catalog.startup import startup_lock
from stratus.catalog.tokens import BearerTokens, aware
from stratus.catalog.tokens import hash_token as hash_token  # re-exported
from stratus.extras import require

NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,254}")
SECURABLE_TYPES = ("metastore", "catalog", "schema", "table", "volume")
# a leaf of a schema: a table or a volume
L = TypeVar("L", m.Table, m.Volume)
TOKEN_PREFIX = "stratus_"  # noqa: S105 - a public prefix, not a secret

# Unity Catalog privileges plus Stratus's APPLY TAG / UNMASK / MANAGE / WRITE VOLUME /
# ALL PRIVILEGES. UNMASK: see PII columns in plaintext.
PRIVILEGES = (
    "CREATE CATALOG",
    "USE CATALOG",
    "CREATE SCHEMA",
    "USE SCHEMA",
    "CREATE TABLE",
    "SELECT",
    "MODIFY",
    "CREATE FUNCTION",
    "EXECUTE",
    "CREATE VOLUME",
    "READ VOLUME",
    "WRITE VOLUME",
    "APPLY TAG",
    "UNMASK",
    "MANAGE",
    "ALL PRIVILEGES",
)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def check_name(value: str, what: str = "name") -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise InvalidArgument(
            f"{what} {value!r} is invalid: use letters, digits, _ and - (max 255)",
            parameter=what,
        )
    return value


def split_name(full_name: str, parts: int, what: str) -> list[str]:
    names = full_name.split(".") if isinstance(full_name, str) else []
    if len(names) != parts:
        shape = ".".join(["catalog", "schema", "table"][:parts])
        raise InvalidArgument(f"{what} {full_name!r} must be {shape}", parameter=what)
    return [check_name(n, what) for n in names]


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_page_token: str | None


class MetastoreService:
    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("postgresql+psycopg"):
            require("postgres", "a PostgreSQL metastore (STRATUS_METASTORE_URL)")
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url, future=True)
        if url.startswith("sqlite"):

            @event.listens_for(self.engine, "connect")
            def _pragmas(conn: Any, _record: Any) -> None:
                cur = conn.cursor()
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA busy_timeout=5000")
                cur.close()

        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # API tokens: the one bearer-token store (sharing recipients' tokens use another table)
        self.tokens = BearerTokens(
            self._sessions, m.Token, m.Principal, "principal_id", TOKEN_PREFIX
        )
        self._lock = threading.Lock()
        self.changes = 0  # authorization changes committed by this process
        self.upgrade()

    # ---- plumbing ------------------------------------------------------------------------
    def upgrade(self) -> None:
        """Apply Alembic migrations up to head, exactly once across processes and machines:
        under the start-up lock, and skipped (without the lock) when already at head."""
        cfg = Config()
        cfg.set_main_option("script_location", str(files("stratus.catalog") / "migrations"))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        head = ScriptDirectory.from_config(cfg).get_current_head()
        if self._migrated(head):
            return
        with self.startup_lock():
            if self._migrated(head):  # another process did it while we waited
                return
            with self.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
            with self.session() as s:
                if s.scalar(select(m.Metastore)) is None:
                    s.add(m.Metastore(name="stratus", owner="admin"))

    def _migrated(self, head: str | None) -> bool:
        with self.engine.connect() as conn:
            if MigrationContext.configure(conn).get_current_revision() != head:
                return False
            return conn.execute(select(m.Metastore.id).limit(1)).first() is not None

    def startup_lock(self) -> AbstractContextManager[None]:
        """The lock every start-up step (migrations, built-in securables) runs under."""
        return startup_lock(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as s:
            yield s
            bumped = s.info.pop("bumped", False)
        if bumped:  # committed: this process's authorizer reloads on its next question
            self.changes += 1

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for reads only (nothing is committed): for callers that query several
        tables at once, e.g. the authorizer's snapshot and the sharing store."""
        with self._sessions() as s:
            yield s

    @contextmanager
    def _creating(self, what: str) -> Iterator[Session]:
        """A session that inserts a named object: a concurrent creator (another gunicorn worker,
        another process) may insert the same name between our check and our commit, and the
        unique constraint then answers AlreadyExists like the check would have."""
        try:
            with self.session() as s:
                yield s
        except IntegrityError:
            raise AlreadyExists(f"{what} already exists") from None

    def _bump(self, s: Session) -> None:
        s.execute(update(m.Metastore).values(generation=m.Metastore.generation + 1))
        s.info["bumped"] = True

    def generation(self) -> int:
        with self._sessions() as s:
            return int(s.scalar(select(m.Metastore.generation)) or 0)

    def metastore(self) -> m.Metastore:
        with self._sessions() as s:
            ms = s.scalar(select(m.Metastore))
            assert ms is not None
            return ms

    # ---- principals and tokens -----------------------------------------------------------
    def create_principal(
        self,
        name: str,
        kind: str = "user",
        *,
        is_admin: bool = False,
        display_name: str | None = None,
    ) -> m.Principal:
        if kind not in ("user", "service_principal", "group"):
            raise InvalidArgument(f"kind {kind!r} must be user, service_principal or group")
        if not name or len(name) > 255 or any(c.isspace() for c in name):
            raise InvalidArgument(f"principal name {name!r} is invalid")
        with self.session() as s:
            if s.scalar(select(m.Principal).where(m.Principal.name == name)):
                raise AlreadyExists(f"principal {name} already exists")
            p = m.Principal(name=name, kind=kind, is_admin=is_admin, display_name=display_name)
            s.add(p)
            self._bump(s)
            return p

    def get_principal(self, name: str) -> m.Principal:
        with self._sessions() as s:
            p = s.scalar(select(m.Principal).where(m.Principal.name == name))
            if p is None:
                raise NotFound(f"principal {name} does not exist")
            return p

    def list_principals(self) -> list[m.Principal]:
        with self._sessions() as s:
            return list(s.scalars(select(m.Principal).order_by(m.Principal.name)))

    def add_member(self, group: str, member: str) -> None:
        with self.session() as s:
            g = s.scalar(select(m.Principal).where(m.Principal.name == group))
            p = s.scalar(select(m.Principal).where(m.Principal.name == member))
            if g is None or g.kind != "group":
                raise NotFound(f"group {group} does not exist")
            if p is None:
                raise NotFound(f"principal {member} does not exist")
            if s.get(m.GroupMember, (g.id, p.id)) is None:
                s.add(m.GroupMember(group_id=g.id, member_id=p.id))
                self._bump(s)

    def memberships(self) -> dict[str, set[str]]:
        """principal name -> names of all groups it belongs to (transitively)."""
        with self._sessions() as s:
            names = {p.id: p.name for p in s.scalars(select(m.Principal))}
            direct: dict[str, set[str]] = {}
            for gm in s.scalars(select(m.GroupMember)):
                direct.setdefault(names[gm.member_id], set()).add(names[gm.group_id])
        result: dict[str, set[str]] = {}
        for who in direct:
            seen: set[str] = set()
            todo = list(direct[who])
            while todo:
                g = todo.pop()
                if g not in seen:
                    seen.add(g)
                    todo += direct.get(g, ())
            result[who] = seen
        return result

    def create_token(
        self, principal: str, *, days: float | None = 90, comment: str | None = None
    ) -> tuple[str, m.Token]:
        """A new random token; the plaintext is returned once and only its hash is stored."""
        with self.session() as s:
            p = s.scalar(select(m.Principal).where(m.Principal.name == principal))
            if p is None:
                raise NotFound(f"principal {principal} does not exist")
            if p.kind == "group":
                raise InvalidArgument("groups cannot hold tokens")
            return self.tokens.issue(s, p.id, days=days or None, comment=comment)

    def resolve_token(self, secret: str) -> m.Principal | None:
        """The active principal holding this unexpired, unrevoked token, else None."""
        found = self.tokens.lookup(secret)
        if found is None or not found[1].active:
            return None
        principal: m.Principal = found[1]
        return principal

    def token_expiry(self, token_hash: str) -> dt.datetime | None:
        """When the token with this hash expires (aware, UTC); None: never, or no such token."""
        with self._sessions() as s:
            expires = s.scalar(select(m.Token.expires_at).where(m.Token.token_hash == token_hash))
        return aware(expires)

    def session_principal(self, name: str, token_hash: str | None) -> m.Principal | None:
        """The active principal ``name``, if ``token_hash`` (when given) is still one of its
        valid tokens (unrevoked, unexpired); else None."""
        with self._sessions() as s:
            principal = s.scalar(select(m.Principal).where(m.Principal.name == name))
            if principal is None or not principal.active:
                return None
            if token_hash is None:
                return principal
            token = s.scalar(select(m.Token).where(m.Token.token_hash == token_hash))
        if token is None or token.principal_id != principal.id or token.revoked_at:
            return None
        expires = aware(token.expires_at)
        if expires is not None and expires <= _now():
            return None
        return principal

    def list_tokens(self, principal: str | None = None) -> list[tuple[m.Token, str]]:
        with self._sessions() as s:
            q = select(m.Token, m.Principal.name).join(
                m.Principal, m.Token.principal_id == m.Principal.id
            )
            if principal:
                q = q.where(m.Principal.name == principal)
            return [(t, n) for t, n in s.execute(q.order_by(m.Token.created_at))]

    def get_token(self, token_id: str) -> tuple[m.Token, str]:
        """The token and the name of its principal."""
        with self._sessions() as s:
            row = s.execute(
                select(m.Token, m.Principal.name)
                .join(m.Principal, m.Token.principal_id == m.Principal.id)
                .where(m.Token.id == token_id)
            ).first()
        if row is None:
            raise NotFound(f"token {token_id} does not exist")
        return row[0], row[1]

    def revoke_token(self, token_id: str) -> m.Token:
        """Revoke the token (already revoked: unchanged); the token as it now is."""
        with self.session() as s:
            tok = s.get(m.Token, token_id)
            if tok is None:
                raise NotFound(f"token {token_id} does not exist")
            self.tokens.revoke([tok])
            self._bump(s)
            return tok

    # ---- securables ----------------------------------------------------------------------
    def _catalog(self, s: Session, name: str) -> m.Catalog:
        c = s.scalar(select(m.Catalog).where(m.Catalog.name == name))
        if c is None:
            raise NotFound(f"catalog {name} does not exist")
        return c

    def _schema(self, s: Session, full_name: str) -> m.Schema:
        cat, sch = split_name(full_name, 2, "schema")
        row = s.scalar(
            select(m.Schema).join(m.Catalog).where(m.Catalog.name == cat, m.Schema.name == sch)
        )
        if row is None:
            raise NotFound(f"schema {full_name} does not exist")
        return row

    def _leaf(
        self, s: Session, model: type[m.Table] | type[m.Volume], full_name: str, what: str
    ) -> Any:
        cat, sch, name = split_name(full_name, 3, what)
        row = s.scalar(
            select(model)
            .join(m.Schema)
            .join(m.Catalog)
            .where(m.Catalog.name == cat, m.Schema.name == sch, model.name == name)
        )
        if row is None:
            raise NotFound(f"{what} {full_name} does not exist")
        return row

    def _page(self, query: Any, s: Session, max_results: int | None, token: str | None) -> Page:
        if max_results is not None and (max_results < 0 or max_results > 10_000):
            raise InvalidArgument(
                "max_results must be between 0 and 10000", parameter="max_results"
            )
        limit = max_results or 1000
        if token:
            query = query.where(query.selected_columns[0].table.c.name > token)
        rows = list(s.scalars(query.limit(limit + 1)))
        nxt = rows[limit - 1].name if len(rows) > limit else None
        return Page(rows[:limit], nxt)

    # catalogs
    def create_catalog(
        self,
        name: str,
        owner: str,
        comment: str | None = None,
        properties: dict[str, str] | None = None,
        storage_root: str | None = None,
    ) -> m.Catalog:
        check_name(name)
        with self._creating(f"catalog {name}") as s:
            if s.scalar(select(m.Catalog).where(m.Catalog.name == name)):
                raise AlreadyExists(f"catalog {name} already exists")
            c = m.Catalog(
                name=name,
                owner=owner,
                comment=comment,
                properties=properties or {},
                storage_root=storage_root,
                created_by=owner,
            )
            s.add(c)
            self._bump(s)
            return c

    def get_catalog(self, name: str) -> m.Catalog:
        with self._sessions() as s:
            return self._catalog(s, name)

    def list_catalogs(self, max_results: int | None = None, page_token: str | None = None) -> Page:
        with self._sessions() as s:
            q = select(m.Catalog).order_by(m.Catalog.name)
            return self._page(q, s, max_results, page_token)

    def update_catalog(self, name: str, by: str, **changes: Any) -> m.Catalog:
        with self.session() as s:
            c = self._catalog(s, name)
            self._apply(
                s, c, by, changes, lambda new: select(m.Catalog).where(m.Catalog.name == new)
            )
            return c

    def delete_catalog(self, name: str, force: bool = False) -> None:
        with self.session() as s:
            c = self._catalog(s, name)
            if c.schemas and not force:
                raise NotEmpty(f"catalog {name} is not empty (use force=true)")
            for sch in list(c.schemas):
                self._delete_schema_tree(s, sch)
            self._forget(s, "catalog", c.id)
            s.delete(c)
            self._bump(s)

    # schemas
    def create_schema(
        self,
        catalog_name: str,
        name: str,
        owner: str,
        comment: str | None = None,
        properties: dict[str, str] | None = None,
    ) -> m.Schema:
        check_name(name)
        with self._creating(f"schema {catalog_name}.{name}") as s:
            c = self._catalog(s, catalog_name)
            exists = s.scalar(
                select(m.Schema).where(m.Schema.catalog_id == c.id, m.Schema.name == name)
            )
            if exists:
                raise AlreadyExists(f"schema {catalog_name}.{name} already exists")
            sch = m.Schema(
                name=name,
                catalog=c,
                owner=owner,
                comment=comment,
                properties=properties or {},
                created_by=owner,
            )
            s.add(sch)
            self._bump(s)
            return sch

    def get_schema(self, full_name: str) -> m.Schema:
        with self._sessions() as s:
            sch = self._schema(s, full_name)
            _ = sch.catalog.name
            return sch

    def list_schemas(
        self, catalog_name: str, max_results: int | None = None, page_token: str | None = None
    ) -> Page:
        with self._sessions() as s:
            c = self._catalog(s, catalog_name)
            q = select(m.Schema).where(m.Schema.catalog_id == c.id).order_by(m.Schema.name)
            page = self._page(q, s, max_results, page_token)
            for sch in page.items:
                _ = sch.catalog.name
            return page

    def update_schema(self, full_name: str, by: str, **changes: Any) -> m.Schema:
        with self.session() as s:
            sch = self._schema(s, full_name)
            self._apply(
                s,
                sch,
                by,
                changes,
                lambda new: select(m.Schema).where(
                    m.Schema.catalog_id == sch.catalog_id, m.Schema.name == new
                ),
            )
            _ = sch.catalog.name
            return sch

    def delete_schema(self, full_name: str, force: bool = False) -> None:
        with self.session() as s:
            sch = self._schema(s, full_name)
            if (sch.tables or sch.volumes) and not force:
                raise NotEmpty(f"schema {full_name} is not empty (use force=true)")
            self._delete_schema_tree(s, sch)
            self._bump(s)

    def _delete_schema_tree(self, s: Session, sch: m.Schema) -> None:
        for t in list(sch.tables):
            self._forget(s, "table", t.id)
            s.delete(t)
        for v in list(sch.volumes):
            self._forget(s, "volume", v.id)
            s.delete(v)
        self._forget(s, "schema", sch.id)
        s.delete(sch)

    # tables
    def create_table(
        self,
        catalog_name: str,
        schema_name: str,
        name: str,
        owner: str,
        *,
        columns: Sequence[dict[str, Any]] = (),
        table_type: str = "MANAGED",
        data_source_format: str = "DELTA",
        storage_location: str | None = None,
        comment: str | None = None,
        properties: dict[str, str] | None = None,
    ) -> m.Table:
        check_name(name)
        with self._creating(f"table {catalog_name}.{schema_name}.{name}") as s:
            sch = self._schema(s, f"{catalog_name}.{schema_name}")
            exists = s.scalar(
                select(m.Table).where(m.Table.schema_id == sch.id, m.Table.name == name)
            )
            if exists:
                raise AlreadyExists(f"table {catalog_name}.{schema_name}.{name} already exists")
            t = m.Table(
                name=name,
                schema=sch,
                owner=owner,
                columns=list(columns),
                table_type=table_type,
                data_source_format=data_source_format,
                storage_location=storage_location,
                comment=comment,
                properties=properties or {},
                created_by=owner,
            )
            s.add(t)
            self._bump(s)
            _ = t.schema.catalog.name
            return t

    def get_table(self, full_name: str) -> m.Table:
        return self._get_leaf(m.Table, full_name, "table")

    def list_tables(
        self,
        catalog_name: str,
        schema_name: str,
        max_results: int | None = None,
        page_token: str | None = None,
    ) -> Page:
        return self._list_leaves(m.Table, catalog_name, schema_name, max_results, page_token)

    def update_table(self, full_name: str, by: str, **changes: Any) -> m.Table:
        return self._update_leaf(m.Table, full_name, "table", by, changes)

    def set_columns(self, full_name: str, by: str, columns: Sequence[dict[str, Any]]) -> m.Table:
        """A table's (or view's) columns after CREATE OR REPLACE changed its schema."""
        with self.session() as s:
            leaf = self._leaf(s, m.Table, full_name, "table")
            leaf.columns = list(columns)
            leaf.updated_at = _now()
            leaf.updated_by = by
            self._bump(s)
            _ = leaf.schema.catalog.name
            return leaf

    def delete_table(self, full_name: str) -> None:
        self._delete_leaf(m.Table, full_name, "table")

    # volumes
    def create_volume(
        self,
        catalog_name: str,
        schema_name: str,
        name: str,
        owner: str,
        *,
        volume_type: str = "MANAGED",
        storage_location: str | None = None,
        comment: str | None = None,
    ) -> m.Volume:
        check_name(name)
        if volume_type not in ("MANAGED", "EXTERNAL"):
            raise InvalidArgument(
                "volume_type must be MANAGED or EXTERNAL", parameter="volume_type"
            )
        with self._creating(f"volume {catalog_name}.{schema_name}.{name}") as s:
            sch = self._schema(s, f"{catalog_name}.{schema_name}")
            exists = s.scalar(
                select(m.Volume).where(m.Volume.schema_id == sch.id, m.Volume.name == name)
            )
            if exists:
                raise AlreadyExists(f"volume {catalog_name}.{schema_name}.{name} already exists")
            v = m.Volume(
                name=name,
                schema=sch,
                owner=owner,
                volume_type=volume_type,
                storage_location=storage_location,
                comment=comment,
                created_by=owner,
            )
            s.add(v)
            self._bump(s)
            _ = v.schema.catalog.name
            return v

    def get_volume(self, full_name: str) -> m.Volume:
        return self._get_leaf(m.Volume, full_name, "volume")

    def list_volumes(
        self,
        catalog_name: str,
        schema_name: str,
        max_results: int | None = None,
        page_token: str | None = None,
    ) -> Page:
        return self._list_leaves(m.Volume, catalog_name, schema_name, max_results, page_token)

    def update_volume(self, full_name: str, by: str, **changes: Any) -> m.Volume:
        return self._update_leaf(m.Volume, full_name, "volume", by, changes)

    def delete_volume(self, full_name: str) -> None:
        self._delete_leaf(m.Volume, full_name, "volume")

    # tables and volumes alike: leaves of a schema, named catalog.schema.name
    def _get_leaf(self, model: type[L], full_name: str, kind: str) -> L:
        with self._sessions() as s:
            leaf = self._leaf(s, model, full_name, kind)
            _ = leaf.schema.catalog.name  # loaded while the session is open
            return leaf

    def _list_leaves(
        self,
        model: type[m.Table] | type[m.Volume],
        catalog_name: str,
        schema_name: str,
        max_results: int | None,
        page_token: str | None,
    ) -> Page:
        with self._sessions() as s:
            sch = self._schema(s, f"{catalog_name}.{schema_name}")
            q = select(model).where(model.schema_id == sch.id).order_by(model.name)
            page = self._page(q, s, max_results, page_token)
            for leaf in page.items:
                _ = leaf.schema.catalog.name
            return page

    def _update_leaf(
        self, model: type[L], full_name: str, kind: str, by: str, changes: dict[str, Any]
    ) -> L:
        with self.session() as s:
            leaf = self._leaf(s, model, full_name, kind)
            self._apply(
                s,
                leaf,
                by,
                changes,
                lambda new: select(model).where(
                    model.schema_id == leaf.schema_id, model.name == new
                ),
            )
            _ = leaf.schema.catalog.name
            return leaf

    def _delete_leaf(
        self, model: type[m.Table] | type[m.Volume], full_name: str, kind: str
    ) -> None:
        with self.session() as s:
            leaf = self._leaf(s, model, full_name, kind)
            self._forget(s, kind, leaf.id)
            s.delete(leaf)
            self._bump(s)

    def _apply(self, s: Session, obj: Any, by: str, changes: dict[str, Any], clash: Any) -> None:
        allowed = {"new_name", "comment", "properties", "owner"}
        unknown = set(changes) - allowed
        if unknown:
            raise InvalidArgument(f"cannot update {', '.join(sorted(unknown))}")
        new_name = changes.get("new_name")
        if new_name and new_name != obj.name:
            check_name(new_name, "new_name")
            if s.scalar(clash(new_name)) is not None:
                raise AlreadyExists(f"{new_name} already exists")
            obj.name = new_name
        if changes.get("comment") is not None:
            obj.comment = changes["comment"]
        if changes.get("properties") is not None:
            obj.properties = {**(obj.properties or {}), **changes["properties"]}
        if changes.get("owner"):
            obj.owner = changes["owner"]
        obj.updated_at = _now()
        obj.updated_by = by
        self._bump(s)

    def _forget(self, s: Session, securable_type: str, securable_id: str) -> None:
        s.execute(
            delete(m.Grant).where(
                m.Grant.securable_type == securable_type, m.Grant.securable_id == securable_id
            )
        )
        s.execute(
            delete(m.Tag).where(
                m.Tag.securable_type == securable_type, m.Tag.securable_id == securable_id
            )
        )

    # ---- resolution ----------------------------------------------------------------------
    def securable(self, securable_type: str, full_name: str) -> Any:
        """The ORM object of any securable type by full name (NotFound if absent)."""
        with self._sessions() as s:
            if securable_type == "metastore":
                ms = s.scalar(select(m.Metastore))
                assert ms is not None
                return ms
            if securable_type == "catalog":
                return self._catalog(s, check_name(full_name, "catalog"))
            if securable_type == "schema":
                sch = self._schema(s, full_name)
                _ = sch.catalog.name
                return sch
            if securable_type in ("table", "volume"):
                model = m.Table if securable_type == "table" else m.Volume
                obj = self._leaf(s, model, full_name, securable_type)
                _ = obj.schema.catalog.name
                return obj
        raise InvalidArgument(
            f"securable_type {securable_type!r} must be one of {', '.join(SECURABLE_TYPES)}",
            parameter="securable_type",
        )

    # ---- grants --------------------------------------------------------------------------
    def grants(self, securable_type: str, securable_id: str) -> dict[str, set[str]]:
        with self._sessions() as s:
            rows = s.scalars(
                select(m.Grant).where(
                    m.Grant.securable_type == securable_type,
                    m.Grant.securable_id == securable_id,
                )
            )
            out: dict[str, set[str]] = {}
            for g in rows:
                out.setdefault(g.principal, set()).add(g.privilege)
            return out

    def all_grants(self) -> list[m.Grant]:
        with self._sessions() as s:
            return list(s.scalars(select(m.Grant)))

    def update_grants(
        self, securable_type: str, securable_id: str, changes: Sequence[dict[str, Any]]
    ) -> None:
        with self.session() as s:
            known = {p.name for p in s.scalars(select(m.Principal))}
            for ch in changes:
                who = ch.get("principal")
                if who not in known:
                    raise InvalidArgument(
                        f"principal {who!r} does not exist", parameter="principal"
                    )
                for priv in [*ch.get("add", []), *ch.get("remove", [])]:
                    if priv not in PRIVILEGES:
                        raise InvalidArgument(f"unknown privilege {priv!r}", parameter="changes")
                for priv in ch.get("remove", []):
                    s.execute(
                        delete(m.Grant).where(
                            m.Grant.securable_type == securable_type,
                            m.Grant.securable_id == securable_id,
                            m.Grant.principal == who,
                            m.Grant.privilege == priv,
                        )
                    )
                for priv in ch.get("add", []):
                    exists = s.scalar(
                        select(m.Grant).where(
                            m.Grant.securable_type == securable_type,
                            m.Grant.securable_id == securable_id,
                            m.Grant.principal == who,
                            m.Grant.privilege == priv,
                        )
                    )
                    if exists is None:
                        s.add(
                            m.Grant(
                                securable_type=securable_type,
                                securable_id=securable_id,
                                principal=who,
                                privilege=priv,
                            )
                        )
            self._bump(s)

    # ---- tags ----------------------------------------------------------------------------
    def set_tags(
        self,
        securable_type: str,
        securable_id: str,
        tags: dict[str, str | None],
        column: str | None = None,
    ) -> None:
        with self.session() as s:
            for key, value in tags.items():
                if not key or len(key) > 255:
                    raise InvalidArgument(f"tag key {key!r} is invalid", parameter="key")
                row = s.scalar(
                    select(m.Tag).where(
                        m.Tag.securable_type == securable_type,
                        m.Tag.securable_id == securable_id,
                        m.Tag.column_name == (column or ""),
                        m.Tag.key == key,
                    )
                )
                if row is None:
                    s.add(
                        m.Tag(
                            securable_type=securable_type,
                            securable_id=securable_id,
                            column_name=column or "",
                            key=key,
                            value=value,
                        )
                    )
                else:
                    row.value = value
            self._bump(s)

    def unset_tags(
        self, securable_type: str, securable_id: str, keys: Sequence[str], column: str | None = None
    ) -> None:
        with self.session() as s:
            s.execute(
                delete(m.Tag).where(
                    m.Tag.securable_type == securable_type,
                    m.Tag.securable_id == securable_id,
                    m.Tag.column_name == (column or ""),
                    m.Tag.key.in_(list(keys)),
                )
            )
            self._bump(s)

    def tags(self, securable_type: str, securable_id: str) -> list[m.Tag]:
        with self._sessions() as s:
            return list(
                s.scalars(
                    select(m.Tag)
                    .where(
                        m.Tag.securable_type == securable_type, m.Tag.securable_id == securable_id
                    )
                    .order_by(m.Tag.column_name, m.Tag.key)
                )
            )

    def column_tags(self) -> list[dict[str, Any]]:
        """information_schema.column_tags: one row per tag on a table column."""
        with self._sessions() as s:
            rows = s.execute(
                select(
                    m.Catalog.name,
                    m.Schema.name,
                    m.Table.name,
                    m.Tag.column_name,
                    m.Tag.key,
                    m.Tag.value,
                )
                .select_from(m.Tag)
                .join(
                    m.Table, (m.Tag.securable_type == "table") & (m.Tag.securable_id == m.Table.id)
                )
                .join(m.Schema, m.Table.schema_id == m.Schema.id)
                .join(m.Catalog, m.Schema.catalog_id == m.Catalog.id)
                .where(m.Tag.column_name != "")
                .order_by(m.Catalog.name, m.Schema.name, m.Table.name, m.Tag.column_name, m.Tag.key)
            )
            keys = (
                "catalog_name",
                "schema_name",
                "table_name",
                "column_name",
                "tag_name",
                "tag_value",
            )
            return [dict(zip(keys, r, strict=True)) for r in rows]
