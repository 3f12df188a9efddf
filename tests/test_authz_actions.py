"""The authorization decision table, in memory: principals x named actions x resources.

Every named action of ``stratus.security.actions`` is asked about every resource of its kind
for every principal of a small metastore (a snapshot built by hand: no database, no HTTP), and
the answers are compared with ``tests/data/authz_decisions.txt``. A change of any rule shows up
as a diff of that file; regenerate it with ``STRATUS_UPDATE_SNAPSHOTS=1`` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stratus.catalog.errors import NotFound, PermissionDenied
from stratus.security.actions import ACTIONS, ANY_SECURABLE, Resource, decide
from stratus.security.authz import METASTORE, Identity, Snapshot

SNAPSHOT = Path(__file__).parent / "data" / "authz_decisions.txt"


def metastore() -> Snapshot:
    """``main`` (admin's) with schema ``main.s`` and table ``main.s.t`` (alice's table) and
    ``main.s.v`` (a volume); ``sales`` (owned by sales_lead) with ``sales.s.t``; ``system``."""
    snap = Snapshot(generation=1)
    objects = {
        METASTORE: "admin",
        ("catalog", "main"): "admin",
        ("schema", "main.s"): "admin",
        ("table", "main.s.t"): "alice",
        ("table", "main.s.u"): "admin",
        ("volume", "main.s.v"): "admin",
        ("catalog", "sales"): "sales_lead",
        ("schema", "sales.s"): "sales_lead",
        ("table", "sales.s.t"): "sales_lead",
        ("catalog", "system"): "admin",
        ("schema", "system.access"): "admin",
        ("table", "system.access.audit"): "admin",
    }
    for i, (key, owner) in enumerate(objects.items()):
        snap.owners[key] = owner
        snap.ids[key] = f"id{i}"
    snap.grants = {
        ("catalog", "main"): {"readers": {"USE CATALOG"}, "carol": {"CREATE SCHEMA"}},
        ("schema", "main.s"): {
            "readers": {"USE SCHEMA", "SELECT"},
            "writers": {"USE SCHEMA", "MODIFY", "CREATE TABLE"},
        },
        ("table", "main.s.u"): {"carol": {"SELECT"}, "dave": {"ALL PRIVILEGES"}},
        ("catalog", "sales"): {"dave": {"USE CATALOG", "USE SCHEMA", "MANAGE"}},
    }
    snap.groups = {
        "bob": frozenset({"readers"}),
        "erin": frozenset({"readers", "writers"}),
    }
    snap.admins = frozenset({"admin"})
    return snap


PRINCIPALS = {
    "admin": Identity("admin", is_admin=True),
    "alice": Identity("alice"),  # owns main.s.t only
    "bob": Identity("bob", groups=frozenset({"readers"})),  # USE + SELECT on main.s
    "carol": Identity("carol"),  # SELECT on main.s.u without USE; CREATE SCHEMA on main
    "dave": Identity("dave"),  # ALL PRIVILEGES on main.s.u; MANAGE on catalog sales
    "erin": Identity("erin", groups=frozenset({"readers", "writers"})),
    "sales_lead": Identity("sales_lead"),
    "nobody": Identity("nobody"),
}
OTHER = {  # objects outside the catalog, with their owners
    "share": [Resource("share", "s1", owner="alice"), Resource("share", "s2", owner="writers")],
    "job": [Resource("job", "j1", owner="bob")],
    "principal": [Resource("principal", "bob", owner="bob")],  # its API tokens
    "audit": [Resource("audit")],
}


def resources(kind: str) -> list[Resource]:
    if kind in OTHER:
        return OTHER[kind]
    keys = [k for k in metastore().ids if kind in (ANY_SECURABLE, k[0])]
    missing = {"catalog": "missing", "schema": "main.missing", "volume": "main.s.missing"}
    if kind in (ANY_SECURABLE, "table"):
        keys.append(("table", "main.s.missing"))
    elif kind in missing:
        keys.append((kind, missing[kind]))
    return [Resource(k, n) for k, n in keys]


def answer(snap: Snapshot, who: Identity, action: str, res: Resource) -> str:
    try:
        decide(snap, who, action, res)
    except NotFound as exc:
        return f"not found ({exc.message})"
    except PermissionDenied as exc:
        return f"denied ({exc.message})"
    return "allowed"


def table() -> str:
    snap = metastore()
    lines = []
    for action in sorted(ACTIONS):
        for res in resources(ACTIONS[action].kind):
            for name, who in PRINCIPALS.items():
                target = f"{res.kind}:{res.name or '-'}"
                lines.append(f"{action:26} {target:26} {name:11} {answer(snap, who, action, res)}")
    return "\n".join(lines) + "\n"


def test_the_decision_table_matches_the_snapshot() -> None:
    got = table()
    if os.environ.get("STRATUS_UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(got)
    assert SNAPSHOT.read_text() == got


@pytest.mark.parametrize(
    ("who", "action", "res", "expected"),
    [
        # reading needs the whole chain: SELECT alone (carol) is not enough
        ("bob", "table.read", ("table", "main.s.u"), "allowed"),
        ("carol", "table.read", ("table", "main.s.u"), "denied"),
        # ownership of the table implies every privilege on it, but not USE above it
        ("alice", "table.modify", ("table", "main.s.t"), "denied"),
        # ALL PRIVILEGES never implies UNMASK; ownership does
        ("dave", "table.unmask", ("table", "main.s.u"), "denied"),
        ("sales_lead", "table.unmask", ("table", "sales.s.t"), "allowed"),
        # nothing held on or below: invisible
        ("nobody", "table.read", ("table", "main.s.u"), "not found"),
        ("nobody", "securable.view", ("catalog", "sales"), "not found"),
        # MANAGE on a catalog is inherited by everything in it
        ("dave", "securable.manage", ("table", "sales.s.t"), "allowed"),
        # nothing is created in system, not even by admins
        ("admin", "schema.create_table", ("schema", "system.access"), "denied"),
        # groups: a share owned by a group is managed by its members
        ("erin", "share.manage", ("share", "s2"), "allowed"),
        ("bob", "share.manage", ("share", "s2"), "not found"),
        ("bob", "audit.read", ("audit", ""), "denied"),
        ("admin", "audit.read", ("audit", ""), "allowed"),
    ],
)
def test_key_decisions(who: str, action: str, res: tuple[str, str], expected: str) -> None:
    owner = {"s2": "writers", "s1": "alice"}.get(res[1])
    got = answer(metastore(), PRINCIPALS[who], action, Resource(*res, owner=owner))
    assert got.split(" (")[0] == expected, got


def test_an_action_is_only_asked_about_its_kind() -> None:
    with pytest.raises(ValueError, match=r"table\.read is about a table"):
        decide(metastore(), PRINCIPALS["admin"], "table.read", Resource("schema", "main.s"))
