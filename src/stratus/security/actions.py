"""Every authorization rule of Stratus, declared once as a named action.

An :class:`Action` says what a caller needs to do something to a resource:

- ``kind``: the kind of resource it is asked about (``table``, ``schema``, ``catalog``,
  ``metastore``, a securable of any kind, or a non-catalog object: ``share``, ``job``, ``audit``);
- ``visible``: the resource and its containers must exist and be visible to the caller, or the
  answer is *not found* (names never leak);
- ``use``: USE CATALOG on the catalog and USE SCHEMA on the schema *above* the resource (the UC
  chain; a privilege anywhere above is inherited);
- ``needs``: privileges on the resource itself, each entry a tuple of alternatives (``OWNER``
  stands for ownership of the resource or of a container above it);
- ``owned``: for non-catalog objects: the caller (or a group of the caller) owns it;
- ``admin_only``: only metastore admins;
- ``writes``: the resource is changed, so nothing in the read-only ``system`` catalog qualifies.

Metastore admins hold every privilege (``admin_only`` and ownership checks included); the
``system`` rule applies to them too. :func:`decide` answers for an in-memory
:class:`~stratus.security.authz.Snapshot`, so the whole decision table is testable without a
database; :meth:`Authorizer.require <stratus.security.authz.Authorizer.require>` and
:meth:`~stratus.security.authz.Authorizer.allowed` ask it about the live metastore.

Where a new rule goes: add an :class:`Action` to :data:`ACTIONS` (and a row to the decision
table test); call ``authorizer.require(who, "the.action", resource)`` where it is enforced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from stratus.catalog.errors import NotFound, PermissionDenied

if TYPE_CHECKING:
    from stratus.security.authz import Identity, Snapshot

CATALOG_KINDS = ("metastore", "catalog", "schema", "table", "volume")
ANY_SECURABLE = "securable"
Key = tuple[str, str]  # (securable_type, full_name)
METASTORE: Key = ("metastore", "")


def parent_of(key: Key) -> Key | None:
    kind, name = key
    if kind == "metastore":
        return None
    if kind == "catalog":
        return METASTORE
    if kind == "schema":
        return ("catalog", name.split(".")[0])
    return ("schema", ".".join(name.split(".")[:2]))


def chain(key: Key) -> list[Key]:
    """The securable and every container above it, metastore first."""
    out: list[Key] = []
    k: Key | None = key
    while k is not None:
        out.append(k)
        k = parent_of(k)
    return out[::-1]


@dataclass(frozen=True)
class Resource:
    """What an action is asked about: a securable (``kind``, full name; ``""`` for the
    metastore) or another object with an ``owner`` (a share, a job)."""

    kind: str
    name: str = ""
    owner: str | None = None


@dataclass(frozen=True)
class Action:
    name: str
    kind: str
    needs: tuple[tuple[str, ...], ...] = ()
    visible: bool = True
    use: bool = True
    owned: bool = False
    admin_only: bool = False
    writes: bool = False
    doing: str = ""  # for admin_only refusals: "read the audit log"


def _a(
    name: str,
    kind: str,
    *needs: str | tuple[str, ...],
    visible: bool = True,
    use: bool = True,
    owned: bool = False,
    admin_only: bool = False,
    writes: bool = False,
    doing: str = "",
) -> Action:
    alts = tuple((n,) if isinstance(n, str) else n for n in needs)
    return Action(name, kind, alts, visible, use, owned, admin_only, writes, doing)


MANAGE = ("OWNER", "MANAGE")
ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        # -- securables in the catalog (UC rules) ---------------------------------------------
        _a("securable.view", ANY_SECURABLE, use=False),  # see it exists (GET catalog, grants)
        _a("securable.describe", ANY_SECURABLE),  # read its metadata (GET schema/table/volume)
        _a("securable.manage", ANY_SECURABLE, MANAGE),  # update, rename, transfer, delete
        _a("securable.grant", ANY_SECURABLE, MANAGE, use=False),  # GRANT / REVOKE
        _a("securable.tag", ANY_SECURABLE, ("APPLY TAG", "OWNER")),
        _a("metastore.create_catalog", "metastore", "CREATE CATALOG", visible=False, use=False),
        _a("catalog.browse", "catalog", "USE CATALOG", use=False),  # list its schemas
        _a(
            "catalog.create_schema",
            "catalog",
            "USE CATALOG",
            "CREATE SCHEMA",
            use=False,
            writes=True,
        ),
        _a("schema.browse", "schema", "USE SCHEMA"),  # list its tables and volumes
        _a("schema.create_table", "schema", "USE SCHEMA", "CREATE TABLE", writes=True),
        _a("schema.create_volume", "schema", "USE SCHEMA", "CREATE VOLUME", writes=True),
        _a("table.read", "table", "SELECT"),
        _a("table.modify", "table", "MODIFY"),
        _a("table.unmask", "table", ("UNMASK", "OWNER")),  # plaintext PII (never ALL PRIVILEGES)
        _a("volume.read", "volume", "READ VOLUME"),  # its files (UC credential vending)
        _a("volume.write", "volume", "WRITE VOLUME"),
        _a(
            "table.unprotect_column",
            "table",
            admin_only=True,
            doing="remove a pii tag: it decrypts the column",
        ),
        # -- other objects --------------------------------------------------------------------
        _a(
            "metastore.admin",
            "metastore",
            admin_only=True,
            visible=False,
            use=False,
            doing="use the admin pages",
        ),
        _a(
            "audit.read",
            "audit",
            admin_only=True,
            visible=False,
            use=False,
            doing="read the audit log",
        ),
        _a(
            "share.admin",
            "share",
            admin_only=True,
            visible=False,
            use=False,
            doing="create shares and manage recipients",
        ),
        _a("share.manage", "share", owned=True, visible=False, use=False),
        # the principal itself (or an admin): issue, list and revoke its API tokens
        _a("principal.tokens", "principal", owned=True, visible=False, use=False),
        _a("job.view", "job", owned=True, visible=False, use=False),
        _a("job.cancel", "job", owned=True, visible=False, use=False),
    )
}


_USE_CATALOG, _USE_SCHEMA = ("USE CATALOG",), ("USE SCHEMA",)


def _needs_of(snap: Snapshot, who: Identity, key: Key, wanted: tuple[str, ...]) -> None:
    held = snap.holds(who.names, key)
    if not any(p in held for p in wanted):
        kind, name = key
        what = " or ".join(wanted)
        raise PermissionDenied(f"{who.name} lacks {what} on {kind} {name or 'metastore'}")


def decide(snap: Snapshot, who: Identity, action: str | Action, resource: Resource) -> None:
    """Return if ``who`` may do ``action`` to ``resource``; raise NotFound (it does not exist
    or is invisible to the caller) or PermissionDenied (naming what is missing)."""
    act = ACTIONS[action] if isinstance(action, str) else action
    if act.kind not in (ANY_SECURABLE, resource.kind):
        raise ValueError(f"action {act.name} is about a {act.kind}, not a {resource.kind}")
    if act.writes and resource.name.split(".")[0] == "system":
        raise PermissionDenied("catalog system is read-only: nothing can be created in it")
    if who.is_admin:
        return
    if act.admin_only:
        raise PermissionDenied(f"{who.name} is not a metastore admin: only admins may {act.doing}")
    if act.owned:
        if resource.owner not in who.names:
            raise NotFound(f"{resource.kind} {resource.name} does not exist")  # never leak names
        return
    key = (resource.kind, resource.name)
    # visible: the resource exists and holds (or is under) something granted or owned, which
    # makes its containers visible too
    if (
        act.visible
        and key != METASTORE
        and (key not in snap.ids or key not in snap.visible(who.names))
    ):
        raise NotFound(f"{resource.kind} {resource.name} does not exist")
    if act.use and resource.kind in ("schema", "table", "volume"):  # USE on the containers
        catalog, *rest = resource.name.split(".")
        _needs_of(snap, who, ("catalog", catalog), _USE_CATALOG)
        if resource.kind != "schema":
            _needs_of(snap, who, ("schema", f"{catalog}.{rest[0]}"), _USE_SCHEMA)
    for wanted in act.needs:
        _needs_of(snap, who, key, wanted)


__all__ = ["ACTIONS", "Action", "Resource", "decide"]
