"""ONE place that decides: may this principal do this to this securable?

Unity Catalog semantics: grants on a container are inherited by its children; grants to a group
apply to its members (transitively); the owner of a securable or of any container above it, and
metastore admins, hold every privilege. Reading a table needs USE CATALOG on its catalog, USE
SCHEMA on its schema and SELECT on it. An object the caller has no privilege on, on it or below it,
is invisible: it is reported as not found, so names never leak. What each operation needs is
declared once, as a named action, in :mod:`stratus.security.actions`; :meth:`Authorizer.require`
and :meth:`Authorizer.allowed` answer for an action and a resource.

Decisions come from an in-memory snapshot of owners, grants and memberships that is rebuilt only
when the metastore's generation counter moves: changes committed by this process are seen by the
next question, changes by other processes within ``check_interval`` seconds (the generation is
read from the database at most that often).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

from stratus.catalog import models as m
from stratus.catalog.errors import NotFound, PermissionDenied
from stratus.catalog.metastore import PRIVILEGES, MetastoreService
from stratus.security.actions import METASTORE, Key, Resource, chain, decide

# UNMASK is never implied by ALL PRIVILEGES: plaintext PII needs an explicit grant (or ownership)
ALL = frozenset(p for p in PRIVILEGES if p not in ("ALL PRIVILEGES", "UNMASK"))


@dataclass(frozen=True)
class Identity:
    name: str
    kind: str = "user"
    groups: frozenset[str] = frozenset()
    is_admin: bool = False

    @cached_property
    def names(self) -> frozenset[str]:
        return frozenset({self.name, *self.groups, "account users"})


@dataclass
class Snapshot:
    generation: int
    owners: dict[Key, str] = field(default_factory=dict)
    ids: dict[Key, str] = field(default_factory=dict)
    grants: dict[Key, dict[str, set[str]]] = field(default_factory=dict)
    groups: dict[str, frozenset[str]] = field(default_factory=dict)
    admins: frozenset[str] = frozenset()
    _visible: dict[frozenset[str], set[Key]] = field(default_factory=dict)

    @classmethod
    def load(cls, ms: MetastoreService) -> Snapshot:
        gen = ms.generation()
        snap = cls(generation=gen)
        with ms.reading() as s:
            meta = s.query(m.Metastore).one()
            snap.owners[METASTORE] = meta.owner
            snap.ids[METASTORE] = meta.id
            cats = {c.id: c.name for c in s.query(m.Catalog)}
            for cid, cname in cats.items():
                snap.ids[("catalog", cname)] = cid
            for c in s.query(m.Catalog):
                snap.owners[("catalog", c.name)] = c.owner
            schemas = {}
            for sch in s.query(m.Schema):
                full = f"{cats[sch.catalog_id]}.{sch.name}"
                schemas[sch.id] = full
                snap.ids[("schema", full)] = sch.id
                snap.owners[("schema", full)] = sch.owner
            leaves: list[tuple[str, m.Table | m.Volume]] = [
                *(("table", t) for t in s.query(m.Table)),
                *(("volume", v) for v in s.query(m.Volume)),
            ]
            for kind, obj in leaves:
                full = f"{schemas[obj.schema_id]}.{obj.name}"
                snap.ids[(kind, full)] = obj.id
                snap.owners[(kind, full)] = obj.owner
            by_id = {(k[0], v): k for k, v in snap.ids.items()}
            for g in s.query(m.Grant):
                key = by_id.get((g.securable_type, g.securable_id))
                if key is not None:
                    snap.grants.setdefault(key, {}).setdefault(g.principal, set()).add(g.privilege)
            snap.admins = frozenset(
                p.name for p in s.query(m.Principal).filter(m.Principal.is_admin.is_(True))
            )
        snap.groups = {k: frozenset(v) for k, v in ms.memberships().items()}
        return snap

    def holds(self, names: frozenset[str], key: Key) -> set[str]:
        """Effective privileges of ``names`` on ``key`` (inherited and owned included)."""
        out: set[str] = set()
        for k in chain(key):
            if self.owners.get(k) in names:
                return set(ALL) | {"OWNER"}
            for who, privs in self.grants.get(k, {}).items():
                if who in names:
                    out |= privs
        if "ALL PRIVILEGES" in out:
            out |= ALL
        return out

    def visible(self, names: frozenset[str]) -> set[Key]:
        """Securables with a privilege or ownership for ``names``, plus their containers."""
        cached = self._visible.get(names)
        if cached is not None:
            return cached
        direct = {k for k, who in self.owners.items() if who in names}
        direct |= {k for k, g in self.grants.items() if names & set(g)}
        seen: set[Key] = set()
        for k in direct:
            seen.update(chain(k))
        # everything below a directly held container is visible too
        for k in self.ids:
            if any(c in direct for c in chain(k)):
                seen.add(k)
        self._visible[names] = seen
        return seen


class Authorizer:
    def __init__(self, metastore: MetastoreService, check_interval: float = 0.2) -> None:
        self.metastore = metastore
        self.check_interval = check_interval
        self._snap: Snapshot | None = None
        self._checked = 0.0
        self._changes = -1
        self._lock = threading.Lock()

    def snapshot(self) -> Snapshot:
        now = time.monotonic()
        snap = self._snap
        changes = self.metastore.changes
        if (
            snap is not None
            and changes == self._changes
            and now - self._checked < self.check_interval
        ):
            return snap
        with self._lock:
            self._changes = changes  # read before the generation: a later commit is noticed
            gen = self.metastore.generation()
            if self._snap is None or self._snap.generation != gen:
                self._snap = Snapshot.load(self.metastore)
            self._checked = now
            return self._snap

    def refresh(self) -> None:
        with self._lock:
            self._snap = None

    def identity(self, principal: m.Principal) -> Identity:
        snap = self.snapshot()
        return Identity(
            name=principal.name,
            kind=principal.kind,
            groups=snap.groups.get(principal.name, frozenset()),
            is_admin=principal.is_admin or principal.name in snap.admins,
        )

    # ---- questions -----------------------------------------------------------------------
    def privileges(self, who: Identity, securable_type: str, full_name: str) -> set[str]:
        if who.is_admin:
            return set(ALL) | {"OWNER"}
        return self.snapshot().holds(who.names, (securable_type, full_name))

    def can_see(self, who: Identity, securable_type: str, full_name: str) -> bool:
        if who.is_admin:
            return True
        snap = self.snapshot()
        return (securable_type, full_name) in snap.visible(who.names)

    def visible_names(
        self, who: Identity, securable_type: str, full_names: Iterable[str]
    ) -> list[str]:
        return [n for n in full_names if self.can_see(who, securable_type, n)]

    # ---- enforcement: one entry point, the named actions of stratus.security.actions -------
    def require(self, who: Identity, action: str, resource: Resource) -> None:
        """Raise NotFound if the caller may not even see ``resource``, PermissionDenied naming
        what is missing if it may not do ``action`` to it (see :data:`ACTIONS`)."""
        decide(self.snapshot(), who, action, resource)

    def allowed(self, who: Identity, action: str, resource: Resource) -> bool:
        try:
            self.require(who, action, resource)
        except (NotFound, PermissionDenied):
            return False
        return True
