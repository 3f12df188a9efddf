"""``stratus share ...``: Delta Sharing administration from the command line.

Acts as the local metastore administrator (whoever can write STRATUS_HOME owns the lakehouse
anyway), like ``stratus admin``. Recipient tokens are printed once and never stored in
plaintext; ``profile`` writes the ``.share`` file a recipient loads with the ``delta-sharing``
client.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import orjson
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:  # the commands import the platform when they run (a fast --help)
    from stratus.context import Stratus
    from stratus.security.authz import Identity
    from stratus.sharing.models import ShareTable

T = TypeVar("T")
console = Console(stderr=True)


@contextmanager
def _stratus() -> Iterator[Stratus]:
    from stratus.config import ConfigError, Settings
    from stratus.context import Stratus
    from stratus.lakehouse.storage import StorageError

    try:
        stratus = Stratus.from_settings(Settings.from_env())
    except (ConfigError, StorageError) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        stratus.bootstrap()
        yield stratus
    finally:
        stratus.close()


def _call(
    stratus: Stratus, action: str, name: str, params: dict[str, Any], fn: Callable[[], T]
) -> T:
    """Run an administrative call as the local admin, audited like the API's."""
    from stratus.catalog.errors import CatalogError
    from stratus.lakehouse.storage import StorageError

    outcome, status, error = "allowed", 200, None
    try:
        return fn()
    except (CatalogError, StorageError, ValueError) as exc:
        error = getattr(exc, "message", str(exc))
        outcome, status = "error", int(getattr(exc, "status", 400))
        raise click.ClickException(error) from None
    finally:
        stratus.governance.audit.record_cli(
            "admin",
            action,
            "share" if "Share" in action else "recipient",
            name,
            params,
            outcome=outcome,
            status=status,
            error=error,
        )


def _admin() -> Identity:
    from stratus.security.governance import LOCAL_ADMIN

    return LOCAL_ADMIN


def _endpoint(stratus: Stratus, endpoint: str | None) -> str:
    return (endpoint or stratus.sharing.default_endpoint()).rstrip("/")


def _write_profile(profile: dict[str, Any], out: Path | None) -> None:
    text = orjson.dumps(profile, option=orjson.OPT_INDENT_2).decode() + "\n"
    if out is None:
        click.echo(text, nl=False)
        return
    import os

    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    console.print(f"profile written to {out} (mode 0600): hand it to the recipient securely")


@click.group("share")
def share_command() -> None:
    """Delta Sharing: shares, their tables, recipients, grants and profile files."""


@share_command.command("create")
@click.argument("name")
@click.option("--comment", default=None)
@click.option("--owner", default=None, help="A principal who may manage the share.")
def create(name: str, comment: str | None, owner: str | None) -> None:
    """Create a share."""
    with _stratus() as s:
        _call(
            s,
            "createShare",
            name,
            {"comment": comment, "owner": owner},
            lambda: s.sharing.admin.create_share(_admin(), name, comment=comment, owner=owner),
        )
    click.echo(f"created share {name}")


@share_command.command("add-table")
@click.argument("share")
@click.argument("table")
@click.option("--as", "shared_as", default=None, help="Shared name SCHEMA.TABLE (default: same).")
@click.option("--columns", default=None, help="Comma-separated columns to share (default: all).")
@click.option(
    "--filter",
    "row_filter",
    default=None,
    help="Rows to share: a predicate on partition columns, e.g. \"city_id IN ('berlin')\".",
)
@click.option("--history", is_flag=True, help="Share history: time travel and change data feed.")
@click.option(
    "--pii",
    type=click.Choice(["omit", "mask"]),
    default="omit",
    show_default=True,
    help="PII columns: left out, or shared masked (never in plaintext).",
)
@click.option("--comment", default=None)
def add_table(
    share: str,
    table: str,
    shared_as: str | None,
    columns: str | None,
    row_filter: str | None,
    history: bool,
    pii: str,
    comment: str | None,
) -> None:
    """Add TABLE (catalog.schema.table; schema.table means main) to SHARE."""
    cols = [c.strip() for c in columns.split(",")] if columns is not None else None
    params = {
        "table": table,
        "shared_as": shared_as,
        "columns": cols,
        "row_filter": row_filter,
        "history_shared": history,
        "pii": pii,
    }
    with _stratus() as s:
        row = _call(
            s,
            "addShareTable",
            share,
            params,
            lambda: s.sharing.admin.add_table(
                _admin(),
                share,
                table,
                shared_as=shared_as,
                columns=cols,
                row_filter=row_filter,
                history=history,
                pii=pii,
                comment=comment,
            ),
        )
    click.echo(f"shared {row.source_table} as {share}.{row.shared_name}")


@share_command.command("remove-table")
@click.argument("share")
@click.argument("shared_name")
def remove_table(share: str, shared_name: str) -> None:
    """Remove SCHEMA.TABLE from SHARE."""
    with _stratus() as s:
        _call(
            s,
            "removeShareTable",
            share,
            {"table": shared_name},
            lambda: s.sharing.admin.remove_table(_admin(), share, shared_name),
        )
    click.echo(f"removed {shared_name} from {share}")


@share_command.command("create-recipient")
@click.argument("name")
@click.option("--comment", default=None)
@click.option("--days", type=float, default=90, show_default=True, help="Token lifetime.")
@click.option("--endpoint", default=None, help="Public URL of /delta-sharing for the profile.")
@click.option(
    "--profile",
    "profile_out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the profile (.share) file here instead of printing the token.",
)
def create_recipient(
    name: str, comment: str | None, days: float, endpoint: str | None, profile_out: Path | None
) -> None:
    """Create a recipient with its first token (shown once)."""
    with _stratus() as s:
        _, secret, tok = _call(
            s,
            "createRecipient",
            name,
            {"days": days},
            lambda: s.sharing.admin.create_recipient(_admin(), name, comment=comment, days=days),
        )
        profile = s.sharing.tokens.profile(secret, tok, _endpoint(s, endpoint))
    console.print(f"recipient {name} created; token {tok.id} expires {profile['expirationTime']}")
    if profile_out is not None:
        _write_profile(profile, profile_out)
    else:
        console.print("token (shown once, store it now):")
        click.echo(secret)


@share_command.command("grant")
@click.argument("share")
@click.argument("recipient")
@click.option("--revoke", is_flag=True, help="Take the share away instead.")
def grant(share: str, recipient: str, revoke: bool) -> None:
    """Grant SHARE to RECIPIENT (or --revoke it)."""
    with _stratus() as s:
        fn = s.sharing.admin.revoke if revoke else s.sharing.admin.grant
        _call(
            s,
            "revokeShare" if revoke else "grantShare",
            share,
            {"recipient": recipient},
            lambda: fn(_admin(), share, recipient),
        )
    click.echo(
        f"{'revoked' if revoke else 'granted'} share {share} {'from' if revoke else 'to'} "
        f"{recipient}"
    )


@share_command.command("revoke-token")
@click.argument("recipient")
@click.argument("token_id", required=False)
@click.option("--all", "all_tokens", is_flag=True, help="Revoke every token of the recipient.")
def revoke_token(recipient: str, token_id: str | None, all_tokens: bool) -> None:
    """Revoke one token of RECIPIENT (by id, see `share list`) or --all of them."""
    if (token_id is None) == (not all_tokens):
        raise click.UsageError("give a TOKEN_ID or --all")
    with _stratus() as s:
        revoked = _call(
            s,
            "revokeRecipientToken",
            recipient,
            {"token_id": token_id, "all": all_tokens},
            lambda: s.sharing.admin.revoke_tokens(_admin(), recipient, token_id),
        )
    click.echo(f"revoked {len(revoked)} token(s) of {recipient}")


@share_command.command("profile")
@click.argument("recipient")
@click.option("--days", type=float, default=90, show_default=True, help="Token lifetime.")
@click.option("--endpoint", default=None, help="Public URL of /delta-sharing.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write it here.")
def profile(recipient: str, days: float, endpoint: str | None, out: Path | None) -> None:
    """Issue a new token for RECIPIENT as a profile (.share) file.

    Its other tokens stay valid until they expire or are revoked (`share revoke-token`)."""
    with _stratus() as s:
        _, secret, tok = _call(
            s,
            "createRecipientProfile",
            recipient,
            {"days": days},
            lambda: s.sharing.admin.create_token(
                _admin(), recipient, days=days, comment="profile from the CLI"
            ),
        )
        doc = s.sharing.tokens.profile(secret, tok, _endpoint(s, endpoint))
    _write_profile(doc, out)


@share_command.command("list")
def list_shares() -> None:
    """Shares with their tables and recipients, and recipients with their tokens."""
    with _stratus() as s:
        admin = _admin()
        shares = [
            s.sharing.admin.get_share_admin(admin, sh.name)
            for sh in s.sharing.admin.list_shares_admin(admin)
        ]
        recipients = s.sharing.admin.list_recipients(admin)
    out = Table("share", "table", "source", "columns", "filter", "history", "pii", "recipients")
    for sh, granted in shares:
        rows: list[ShareTable | None] = [*sorted(sh.tables, key=lambda t: t.shared_name)]
        for t in rows or [None]:
            out.add_row(
                sh.name,
                t.shared_name if t else "-",
                t.source_table if t else "",
                ", ".join(t.columns) if t and t.columns else ("all" if t else ""),
                (t.row_filter or "") if t else "",
                ("yes" if t.history_shared else "no") if t else "",
                t.pii_mode if t else "",
                ", ".join(granted),
            )
    Console().print(out)
    tokens = Table("recipient", "token id", "prefix", "expires", "status")
    for r in recipients:
        for tok in r["tokens"] or [None]:
            tokens.add_row(
                r["name"],
                tok["id"] if tok else "-",
                (tok["prefix"] + "…") if tok else "",
                (tok["expiration_time"] or "never") if tok else "",
                tok["status"] if tok else "",
            )
    Console().print(tokens)
    sys.stdout.flush()
