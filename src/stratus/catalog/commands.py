"""Every change to the catalog, in one place: the Unity Catalog API, SQL DDL, the CLI, processing
jobs and the Explorer (which calls the API) all call these commands.

A command takes the caller's :class:`~stratus.security.authz.Identity`, authorizes itself with a
named action (:mod:`stratus.security.actions`), validates, changes the metastore (and the data,
where the rule says so) and tells the authorizer that grants, owners or names moved. Callers
parse their input and render the result; they decide nothing.

The rules that used to differ between the REST API, SQL and the CLI, now one each:

- **Dropping a table** (REST ``DELETE /tables``, SQL ``DROP TABLE``, and every table removed with
  a catalog or schema by ``force``): a MANAGED table's data is deleted with it (its Delta log and
  files: nothing of it reappears in a new table of the same name); an EXTERNAL table's data is
  left where it is, as Unity Catalog does.
- **PII tags** (REST ``PUT /tags``, SQL ``SET TAGS``, ingest): a partition column or a key
  column cannot be PII (PII is encrypted with a fresh nonce per value).
- **Column names** in tags are matched case-insensitively (as Databricks does) and stored with
  the table's own spelling.
- **REVOKE ALL PRIVILEGES** (SQL ``REVOKE``, REST ``PATCH /permissions`` ``remove``, the CLI)
  removes every privilege.
- **A table in a schema that does not exist**: REST and SQL refuse (the schema is not found, as
  in Unity Catalog); where the schema is created with the table (CLI ingest, processing jobs),
  the caller needs what creating that schema needs (USE CATALOG and CREATE SCHEMA on the
  catalog), and owns it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any

from stratus.catalog import models as m
from stratus.catalog import registry
from stratus.catalog.errors import InvalidArgument, NotFound, PermissionDenied
from stratus.catalog.metastore import PRIVILEGES, MetastoreService, Page, check_name
from stratus.catalog.registry import TableSpec
from stratus.lakehouse.tables import Lakehouse
from stratus.security.actions import Resource
from stratus.security.authz import Authorizer, Identity
from stratus.tables.protect import PII_TAG
from stratus.tables.service import TableService

MAX_TAG_VALUE = 1000
MAX_TAG_KEY = 255
# which privileges make sense where (all are inherited downwards from where they are granted)
APPLICABLE: dict[str, frozenset[str]] = {
    "metastore": frozenset(PRIVILEGES),
    "catalog": frozenset(PRIVILEGES) - {"CREATE CATALOG"},
    "schema": frozenset(PRIVILEGES) - {"CREATE CATALOG", "USE CATALOG", "CREATE SCHEMA"},
    "table": frozenset({"SELECT", "MODIFY", "APPLY TAG", "UNMASK", "MANAGE", "ALL PRIVILEGES"}),
    "volume": frozenset({"READ VOLUME", "WRITE VOLUME", "APPLY TAG", "MANAGE", "ALL PRIVILEGES"}),
}
BUILTIN = frozenset(
    {
        ("catalog", "main"),
        ("catalog", "system"),
        ("schema", "main.weather"),
        *(("table", t.full_name) for t in registry.builtin_tables()),
    }
)
UPDATABLE = {"new_name", "comment", "properties", "owner"}


def is_builtin(kind: str, full_name: str) -> bool:
    return full_name.split(".")[0] == "system" or (kind, full_name) in BUILTIN


def check_tags(tags: Mapping[str, str | None], parameter: str = "tags") -> None:
    for key, value in tags.items():
        if not key or len(key) > MAX_TAG_KEY or "," in key:
            raise InvalidArgument(
                f"tag key {key!r}: keys are 1 to {MAX_TAG_KEY} characters without ','",
                parameter=f"{parameter}.{key}",
            )
        if value is not None and len(value) > MAX_TAG_VALUE:
            raise InvalidArgument(
                f"tag {key}: values are at most {MAX_TAG_VALUE} characters",
                parameter=f"{parameter}.{key}",
            )


def column_named(table: m.Table, full_name: str, column: str) -> str:
    """The table's own spelling of ``column``, matched case-insensitively (as Databricks)."""
    by_lower = {str(c.get("name", "")).lower(): str(c.get("name")) for c in table.columns or []}
    found = by_lower.get(column.lower())
    if found is None:
        raise InvalidArgument(f"table {full_name} has no column {column!r}", parameter="column")
    return found


class CatalogCommands:
    """Create, update, drop, grant, revoke, tag and list securables for a caller."""

    def __init__(
        self,
        metastore: MetastoreService,
        authorizer: Authorizer,
        lakehouse: Lakehouse,
        tables: TableService,
    ) -> None:
        self.metastore = metastore
        self.authorizer = authorizer
        self.lakehouse = lakehouse
        self.tables = tables

    # ---- plumbing ------------------------------------------------------------------------
    def require(self, who: Identity, action: str, kind: str, full_name: str = "") -> None:
        self.authorizer.require(who, action, Resource(kind, full_name))

    def _changed(self) -> None:
        """Grants, owners or names changed: decide the next question on fresh state."""
        self.authorizer.refresh()

    def _exists(self, kind: str, full_name: str) -> bool:
        try:
            self.metastore.securable(kind, full_name)
        except NotFound:
            return False
        return True

    @staticmethod
    def _not_builtin(kind: str, full_name: str, doing: str) -> None:
        if is_builtin(kind, full_name):
            raise PermissionDenied(f"{kind} {full_name} is built in and cannot be {doing}")

    # ---- reading -------------------------------------------------------------------------
    def get(self, who: Identity, kind: str, full_name: str) -> Any:
        """A securable's metadata: catalogs need visibility, the rest USE on their
        containers too."""
        action = "securable.view" if kind in ("catalog", "metastore") else "securable.describe"
        self.require(who, action, kind, full_name)
        return self.metastore.securable(kind, full_name)

    def list_visible(
        self,
        who: Identity,
        kind: str,
        parent: str = "",
        limit: int | None = None,
        token: str | None = None,
    ) -> tuple[list[Any], str | None]:
        """One page (``limit`` None: all) of the catalogs, a catalog's schemas or a schema's
        tables or volumes (``parent``) that ``who`` can see, and the next page's token.
        Listing inside a catalog needs USE CATALOG on it, inside a schema USE SCHEMA too."""
        ms = self.metastore
        fetch: Callable[[int, str | None], Page]
        if kind == "catalog":
            fetch = ms.list_catalogs
        elif kind == "schema":
            self.require(who, "catalog.browse", "catalog", parent)
            fetch = partial(ms.list_schemas, parent)
        elif kind in ("table", "volume"):
            self.require(who, "schema.browse", "schema", parent)
            lister = ms.list_tables if kind == "table" else ms.list_volumes
            catalog, schema = parent.split(".")
            fetch = partial(lister, catalog, schema)
        else:
            raise InvalidArgument(f"a {kind} holds nothing to list", parameter="securable_type")
        return self._visible_page(fetch, who, kind, f"{parent}." if parent else "", limit, token)

    def _visible_page(
        self,
        fetch: Callable[[int, str | None], Page],
        who: Identity,
        kind: str,
        prefix: str,
        limit: int | None,
        token: str | None,
    ) -> tuple[list[Any], str | None]:
        """One page (``limit`` None: all) of only what ``who`` can see; the metastore is read
        in batches until the page is full, so pages stay full and the token resumes right
        after the last item returned."""
        batch = (limit + 1) if limit else 10_000
        out: list[Any] = []
        while True:
            page = fetch(batch, token)
            for item in page.items:
                if self.authorizer.can_see(who, kind, prefix + item.name):
                    out.append(item)
                    if limit and len(out) > limit:
                        return out[:limit], out[limit - 1].name
            if page.next_page_token is None:
                return out, None
            token = page.next_page_token

    def permissions(
        self, who: Identity, kind: str, full_name: str
    ) -> tuple[Any, dict[str, set[str]]]:
        """The securable and its grants (principal -> privileges)."""
        self.require(who, "securable.view", kind, full_name)
        obj = self.metastore.securable(kind, full_name)
        return obj, self.metastore.grants(kind, obj.id)

    def tags(
        self, who: Identity, kind: str, full_name: str, column: str | None = None
    ) -> list[m.Tag]:
        self.require(who, "securable.describe", kind, full_name)
        obj = self.metastore.securable(kind, full_name)
        tags = self.metastore.tags(kind, obj.id)
        if column is not None:
            tags = [t for t in tags if t.column_name.lower() == column.lower()]
        return tags

    def column_tags(self, who: Identity, **wanted: str | None) -> list[dict[str, Any]]:
        """Tags on the columns of tables ``who`` can see, filtered by catalog_name,
        schema_name and table_name."""
        return [
            r
            for r in self.metastore.column_tags()
            if all(v is None or r[k] == v for k, v in wanted.items())
            and self.authorizer.can_see(
                who, "table", f"{r['catalog_name']}.{r['schema_name']}.{r['table_name']}"
            )
        ]

    # ---- creating ------------------------------------------------------------------------
    def create_catalog(
        self,
        who: Identity,
        name: str,
        *,
        comment: str | None = None,
        properties: Mapping[str, str] | None = None,
        storage_root: str | None = None,
    ) -> m.Catalog:
        check_name(name, "name")
        self.require(who, "metastore.create_catalog", "metastore")
        c = self.metastore.create_catalog(
            name,
            who.name,
            comment=comment,
            properties=dict(properties) if properties is not None else None,
            storage_root=storage_root,
        )
        self._changed()
        return c

    def create_schema(
        self,
        who: Identity,
        catalog: str,
        name: str,
        *,
        comment: str | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> m.Schema:
        """The new schema, owned by ``who``."""
        check_name(catalog, "catalog_name")
        check_name(name, "name")
        self.require(who, "catalog.create_schema", "catalog", catalog)
        s = self.metastore.create_schema(
            catalog,
            name,
            who.name,
            comment=comment,
            properties=dict(properties) if properties is not None else None,
        )
        self._changed()
        return s

    def create_table(
        self,
        who: Identity,
        catalog: str,
        schema: str,
        name: str,
        *,
        columns: list[dict[str, Any]],
        table_type: str = "MANAGED",
        data_source_format: str = "DELTA",
        storage_location: str | None = None,
        comment: str | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> m.Table:
        """Register a table owned by ``who`` (a MANAGED one stores under the lakehouse)."""
        args = (who, "schema.create_table", catalog, schema, name)
        location: str | None = self._new_leaf(*args, storage_location, folder="")
        if table_type == "VIEW":  # a view stores nothing
            location = storage_location
        t = self.metastore.create_table(
            catalog,
            schema,
            name,
            who.name,
            columns=columns,
            table_type=table_type,
            data_source_format=data_source_format,
            storage_location=location,
            comment=comment,
            properties=dict(properties) if properties is not None else None,
        )
        self._changed()
        return t

    def create_volume(
        self,
        who: Identity,
        catalog: str,
        schema: str,
        name: str,
        *,
        volume_type: str = "MANAGED",
        storage_location: str | None = None,
        comment: str | None = None,
    ) -> m.Volume:
        # "." cannot occur in a name, so managed volumes never collide with a table's folder
        args = (who, "schema.create_volume", catalog, schema, name)
        location = self._new_leaf(*args, storage_location, folder=".volumes/")
        v = self.metastore.create_volume(
            catalog,
            schema,
            name,
            who.name,
            volume_type=volume_type,
            storage_location=location,
            comment=comment,
        )
        self._changed()
        return v

    def _new_leaf(
        self,
        who: Identity,
        action: str,
        catalog: str,
        schema: str,
        name: str,
        location: str | None,
        *,
        folder: str,
    ) -> str:
        """Check the names and authorize creating a table or volume in the schema; its storage
        location (a managed one's is under the lakehouse root)."""
        for value, what in ((catalog, "catalog_name"), (schema, "schema_name"), (name, "name")):
            check_name(value, what)
        self.require(who, action, "schema", f"{catalog}.{schema}")
        return location or self.lakehouse.storage.table_url(f"{folder}{catalog}/{schema}/{name}")

    def authorize_new_table(self, who: Identity, full_name: str) -> bool:
        """May ``who`` create table ``full_name``, its schema too if missing? True when the
        schema must be created (the caller needs USE CATALOG and CREATE SCHEMA on the
        catalog, and owns the new schema). Used where a schema is created with the table:
        CLI ingest and processing jobs."""
        catalog, schema, _ = full_name.split(".")
        self.metastore.get_catalog(catalog)  # admins pass every check below, but not this one
        schema_name = f"{catalog}.{schema}"
        exists = self._exists("schema", schema_name)
        if exists and self.authorizer.allowed(
            who, "securable.view", Resource("schema", schema_name)
        ):
            self.require(who, "schema.create_table", "schema", schema_name)
            return False
        # missing or invisible: the same answer unless the caller could create it anyway
        self.require(who, "catalog.create_schema", "catalog", catalog)
        if exists:
            raise NotFound(f"schema {schema_name} does not exist")
        return True

    def authorize_write(self, who: Identity, full_name: str) -> bool:
        """MODIFY on an existing table, else what creating it needs (see
        :meth:`authorize_new_table`); True if the table is new."""
        if self._exists("table", full_name):
            self.require(who, "table.modify", "table", full_name)
            return False
        self.authorize_new_table(who, full_name)
        return True

    # ---- changing ------------------------------------------------------------------------
    def update(self, who: Identity, kind: str, full_name: str, changes: Mapping[str, Any]) -> Any:
        """Rename (``new_name``), comment, properties or a new ``owner`` (a principal):
        ownership or MANAGE; built-ins cannot be renamed."""
        self.require(who, "securable.manage", kind, full_name)
        todo = {k: v for k, v in changes.items() if v is not None}
        unknown = set(todo) - UPDATABLE
        if unknown:
            raise InvalidArgument(f"{sorted(unknown)[0]}: cannot be changed", parameter="body")
        leaf = full_name.rsplit(".", 1)[-1]
        if "new_name" in todo:
            check_name(todo["new_name"], "new_name")
            if todo["new_name"] == leaf:
                del todo["new_name"]
            else:
                self._not_builtin(kind, full_name, "renamed")
        if "owner" in todo:
            try:
                self.metastore.get_principal(todo["owner"])
            except NotFound:
                raise InvalidArgument(
                    f"owner: principal {todo['owner']!r} does not exist", parameter="owner"
                ) from None
        update: dict[str, Callable[..., Any]] = {
            "catalog": self.metastore.update_catalog,
            "schema": self.metastore.update_schema,
            "table": self.metastore.update_table,
            "volume": self.metastore.update_volume,
        }
        obj = update[kind](full_name, who.name, **todo)
        self._changed()
        return obj

    def drop(
        self,
        who: Identity,
        kind: str,
        full_name: str,
        *,
        force: bool = False,
        if_exists: bool = False,
    ) -> bool:
        """Delete a catalog, schema, table or volume (``force``: with what it holds).
        Ownership or MANAGE; built-ins cannot be deleted. MANAGED tables' data goes with them,
        EXTERNAL tables' data stays. False if it did not exist and ``if_exists``."""
        try:
            self.require(who, "securable.manage", kind, full_name)
            self.metastore.securable(kind, full_name)
        except NotFound:
            if if_exists:
                return False
            raise
        self._not_builtin(kind, full_name, "deleted")
        purge = self._managed_tables(kind, full_name, force)
        if kind == "catalog":
            self.metastore.delete_catalog(full_name, force=force)
        elif kind == "schema":
            self.metastore.delete_schema(full_name, force=force)
        elif kind == "table":
            self.metastore.delete_table(full_name)
        elif kind == "volume":
            self.metastore.delete_volume(full_name)
        else:
            raise InvalidArgument(f"a {kind} cannot be deleted", parameter="securable_type")
        self._changed()
        for spec in purge:  # after the metastore commit: a failure never leaves a dangling entry
            self.tables.remove_data(spec)
        return True

    def _managed_tables(self, kind: str, full_name: str, force: bool) -> list[TableSpec]:
        """The MANAGED tables a drop removes (their data is deleted with them)."""
        if kind == "table":
            tables = [self.metastore.get_table(full_name)]
        elif kind in ("catalog", "schema") and force:
            tables = list(self._tables_under(kind, full_name))
        else:
            return []
        out = []
        for t in tables:
            if t.table_type == "MANAGED":
                with contextlib.suppress(NotFound, InvalidArgument):
                    out.append(self.tables.spec(t.full_name))
        return out

    def _tables_under(self, kind: str, full_name: str) -> Iterable[m.Table]:
        catalog = full_name.split(".")[0]
        if kind == "schema":
            schemas = [full_name.split(".")[1]]
        else:
            schemas = [
                s.name for s in _all(lambda n, t: self.metastore.list_schemas(catalog, n, t))
            ]
        for schema in schemas:
            yield from _all(partial(self.metastore.list_tables, catalog, schema))

    # ---- grants --------------------------------------------------------------------------
    def update_permissions(
        self, who: Identity, kind: str, full_name: str, changes: Sequence[Mapping[str, Any]]
    ) -> dict[str, set[str]]:
        """Apply ``[{"principal", "add": [...], "remove": [...]}]``: ownership or MANAGE.
        Removing ALL PRIVILEGES removes every privilege (as Databricks' REVOKE does)."""
        todo = []
        for i, ch in enumerate(changes):
            change: dict[str, Any] = {"principal": ch.get("principal")}
            add: list[str] = []
            remove: list[str] = []
            for op in ("add", "remove"):
                for priv in ch.get(op) or []:
                    if priv not in PRIVILEGES:
                        raise InvalidArgument(
                            f"unknown privilege {priv!r}", parameter=f"changes[{i}].{op}"
                        )
                    if op == "add" and priv not in APPLICABLE[kind]:
                        raise InvalidArgument(
                            f"{priv} cannot be granted on a {kind}", parameter=f"changes[{i}].add"
                        )
                    (add if op == "add" else remove).append(priv)
            if "ALL PRIVILEGES" in remove:
                remove = list(PRIVILEGES)
            todo.append({**change, "add": add, "remove": remove})
        self.require(who, "securable.grant", kind, full_name)
        obj = self.metastore.securable(kind, full_name)
        self.metastore.update_grants(kind, obj.id, todo)
        self._changed()
        return self.metastore.grants(kind, obj.id)

    def grant(
        self,
        who: Identity,
        kind: str,
        full_name: str,
        principals: Sequence[str],
        privileges: Sequence[str],
        *,
        revoke: bool = False,
    ) -> dict[str, set[str]]:
        """GRANT (or REVOKE) ``privileges`` on a securable to (from) each of ``principals``."""
        op = "remove" if revoke else "add"
        changes = [{"principal": p, op: list(privileges)} for p in principals]
        return self.update_permissions(who, kind, full_name, changes)

    # ---- tags ----------------------------------------------------------------------------
    def _tag_target(
        self, who: Identity, kind: str, full_name: str, column: str | None
    ) -> tuple[Any, str | None]:
        self.require(who, "securable.tag", kind, full_name)
        obj = self.metastore.securable(kind, full_name)
        if column is None:
            return obj, None
        if kind != "table":
            raise InvalidArgument("columns exist only on tables", parameter="column")
        return obj, column_named(obj, full_name, column)

    def set_tags(
        self,
        who: Identity,
        kind: str,
        full_name: str,
        tags: Mapping[str, str | None],
        column: str | None = None,
    ) -> Any:
        """Set tags on a securable or a table column: APPLY TAG or ownership. A ``pii`` tag
        on a column encrypts it (the table is rewritten as a new version)."""
        check_tags(tags)
        obj, column = self._tag_target(who, kind, full_name, column)
        rest = dict(tags)
        if column is not None and PII_TAG in rest:
            self._pii_change(full_name, column, rest.pop(PII_TAG) or PII_TAG)
        if rest:
            self.metastore.set_tags(kind, obj.id, rest, column)
        return obj

    def unset_tags(
        self,
        who: Identity,
        kind: str,
        full_name: str,
        keys: Sequence[str],
        column: str | None = None,
    ) -> Any:
        """Remove tags; removing a column's ``pii`` tag decrypts it: metastore admins only."""
        obj, column = self._tag_target(who, kind, full_name, column)
        rest = list(keys)
        if column is not None and PII_TAG in rest:
            self.require(who, "table.unprotect_column", "table", full_name)
            self._pii_change(full_name, column, None)
            rest = [k for k in rest if k != PII_TAG]
        if rest:
            self.metastore.unset_tags(kind, obj.id, rest, column)
        return obj

    def _pii_change(self, table: str, column: str, kind: str | None) -> None:
        if ("table", table) in BUILTIN:
            raise InvalidArgument(
                f"{table} is a built-in table: its columns cannot be PII", parameter="column"
            )
        self.tables.set_pii(table, column, kind)


def _all(fetch: Callable[[int, str | None], Page]) -> Iterable[Any]:
    token = None
    while True:
        page = fetch(10_000, token)
        yield from page.items
        token = page.next_page_token
        if not token:
            return


__all__ = ["APPLICABLE", "BUILTIN", "CatalogCommands", "check_tags", "column_named"]
