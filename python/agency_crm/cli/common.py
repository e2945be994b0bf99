"""What every command group shares: the options they have in common, help without type noise,
one-line errors, and the database connection checked for the schema."""

from __future__ import annotations

import enum
import getpass
import json
import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, NoReturn, TypeVar

import psycopg
import typer
from psycopg import conninfo

# typer vendors its own copy of click: the classes its commands are made of.
from typer._click.core import Context, Parameter
from typer._click.formatting import HelpFormatter
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from agency_crm import db, schema
from agency_crm.errors import AgencyCrmError

N = TypeVar("N", int, float)


def _plain_flags(params: Iterable[Parameter]) -> None:
    # A flag takes no value: show no type for it (typer would print <bool>); an argument's
    # name says what it is (typer would print <str> beside it).
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""
        elif isinstance(param, TyperArgument):
            param.display_type_rich = _no_type  # type: ignore[method-assign]


def _no_type(ctx: Context) -> None:
    return None


class Command(TyperCommand):
    """A command whose help shows each option's value as its metavar, flags bare."""

    def format_help(self, ctx: Context, formatter: HelpFormatter) -> None:
        _plain_flags(self.get_params(ctx))
        super().format_help(ctx, formatter)


class Group(TyperGroup):
    """A command group with the same help style as :class:`Command`."""

    def format_help(self, ctx: Context, formatter: HelpFormatter) -> None:
        _plain_flags(self.get_params(ctx))
        super().format_help(ctx, formatter)


def group(help: str) -> typer.Typer:
    """A command group (``agency-crm db``, ``agency-crm push``)."""
    return typer.Typer(
        cls=Group,
        help=help,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )


def examples(*lines: str) -> str:
    """A command's epilog: its examples, one per line."""
    return "Examples:\n\n" + "\n\n".join(f"  $ {line}" for line in lines)


def choices(values: type[enum.Enum]) -> str:
    """The metavar of an option taking one of an enum's values: [a|b|c]."""
    return "[" + "|".join(str(v.value) for v in values) + "]"


def between(low: N, high: N | None = None) -> Callable[[N | None], N | None]:
    """An option callback refusing values outside [low, high] (help says the range in words)."""

    def check(value: N | None) -> N | None:
        if value is not None and (value < low or (high is not None and value > high)):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise typer.BadParameter(f"must be {bound}, got {value}")
        return value

    return check


def bounded(
    flag: str, metavar: str, low: N, high: N | None = None, *, help: str, **options: Any
) -> Any:
    """An option taking a number in [low, high] (no upper bound when high is None): checked,
    and the bounds said once, in its help."""
    if high is not None:
        span = f"{low:g} to {high:g}"
    else:
        span = "0 or more" if low == 0 else f"at least {low:g}"
    return typer.Option(
        flag, metavar=metavar, callback=between(low, high), help=f"{help} ({span})", **options
    )


DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        metavar="URL",
        envvar=["AGENCY_CRM_DATABASE_URL", "DATABASE_URL"],
        show_envvar=True,
        help="PostgreSQL URL (postgresql://user@host/db) or key=value string. "
        "Without it, libpq's PG* variables apply.",
    ),
]
JsonOutput = Annotated[
    bool,
    typer.Option("--json", envvar="AGENCY_CRM_JSON", show_envvar=True, help="Print JSON."),
]
ClientOption = Annotated[
    list[str] | None,
    typer.Option("--client", metavar="UUID", help="Only this client; repeat for several."),
]


ClientRef = Annotated[
    str,
    typer.Option(
        "--client",
        metavar="CLIENT",
        envvar="AGENCY_CRM_CLIENT",
        show_envvar=True,
        help="The client: its uuid, or its exact name.",
    ),
]

# Exit codes the commands share; each command's help names those it uses.
EXIT_FAILED = 1  # the command failed: refused, or the database or a CRM answered an error
EXIT_USAGE = 2  # a bad option or value (also an id the CRM does not know)
EXIT_PROBLEMS = 3  # a check found problems (push check, crm test)
EXIT_NOT_FOUND = 4  # no such client, CRM config, pipeline or API token
EXIT_CONFLICT = 5  # not now: another CRM is connected, none is, an OAuth state was used
EXIT_UNAVAILABLE = 6  # the CRM could not be asked (timeout, 5xx, 429): try again later
EXIT_CODES_HELP = (
    "Exit codes: 0 done; 1 failed (the CRM or the database refused); 2 a bad option or value"
    " (also an id the CRM does not know); 4 no such client, config or pipeline; 5 not now"
    " (another CRM is connected, or none is); 6 the CRM could not be reached (try again)."
)


def exit_code(exc: AgencyCrmError) -> int:
    """The exit code of an error: by its kind for the service's errors (its HTTP status),
    else 1."""
    from agency_crm.service.errors import ServiceError  # light: no service machinery

    if not isinstance(exc, ServiceError):
        return EXIT_FAILED
    return {
        404: EXIT_NOT_FOUND,
        409: EXIT_CONFLICT,
        422: EXIT_USAGE,
        502: EXIT_UNAVAILABLE,
    }.get(exc.status, EXIT_FAILED)


def resolve_client(conn: psycopg.Connection[Any], value: str) -> tuple[uuid.UUID, str]:
    """The live client a --client value names (its uuid or its exact name): (id, name); a
    one-line error when none or several do."""
    from agency_crm.queries import SERVICE
    from agency_crm.service.errors import NotFound

    text = value.strip()
    try:
        as_id: uuid.UUID | None = uuid.UUID(text)
    except ValueError:
        as_id = None
    rows = conn.execute(SERVICE["find_client"], {"client_id": as_id, "name": text}).fetchall()
    by_id = [r for r in rows if r[0] == as_id]
    if by_id:
        return by_id[0][0], str(by_id[0][1])
    if len(rows) == 1:
        return rows[0][0], str(rows[0][1])
    if not rows:
        raise NotFound(
            f"no client has the id or name {value!r}",
            hint="--client takes a client's uuid or its exact name (case matters)",
            code="client_not_found",
        )
    raise AgencyCrmError(
        f"{len(rows)}{'+' if len(rows) == 5 else ''} clients are named {value!r}",
        hint="name one by its uuid: " + ", ".join(str(r[0]) for r in rows),
    )


def client_ids(values: list[str] | None) -> list[uuid.UUID] | None:
    """The --client values as uuids (None: every client)."""
    if not values:
        return None
    out = []
    for value in values:
        try:
            out.append(uuid.UUID(value))
        except ValueError:
            raise typer.BadParameter(f"{value!r} is not a uuid", param_hint="'--client'") from None
    return out


def to_json(value: Any) -> str:
    """JSON of command output: timestamps as ISO 8601, uuids and decimals as strings."""

    def default(item: Any) -> Any:
        if isinstance(item, datetime | date):
            return item.isoformat()
        if isinstance(item, uuid.UUID | Decimal | enum.Enum):
            return str(item.value if isinstance(item, enum.Enum) else item)
        raise TypeError(f"{type(item).__name__} is not JSON serialisable")

    return json.dumps(value, default=default)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Aligned columns, two spaces apart, a header line first."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        typer.echo("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def connect_ready(database_url: str | None) -> psycopg.Connection[tuple[object, ...]]:
    """A connection to a database whose agency-crm schema is installed and current, or a
    one-line error saying what to run."""
    conn = db.connect(database_url)
    try:
        schema.require_current(conn, db.describe(conn))
    except BaseException:
        conn.close()
        raise
    return conn


def pool_dsn(database_url: str | None, *, check: bool = True) -> str:
    """Check the database answers and holds the current schema (one readable line if not;
    ``check=False``: the caller did); return the DSN to pool, with a connect timeout."""
    if check:
        connect_ready(database_url).close()
    params = conninfo.conninfo_to_dict(database_url or "")
    params.setdefault("connect_timeout", db.CONNECT_TIMEOUT_S)
    return conninfo.make_conninfo(**params)  # type: ignore[arg-type]


def read_secret(what: str, *, prompt: str | None = None, param_hint: str = "stdin") -> str:
    """A secret from stdin: a hidden prompt (``prompt``, else ``what``) on a terminal, else all
    of stdin (one line; the surrounding whitespace and line break dropped)."""
    if sys.stdin.isatty():
        # The prompt goes to the terminal (/dev/tty), not to a redirected stdout or stderr.
        text = getpass.getpass(f"{prompt or what} (input hidden): ")
    else:
        text = sys.stdin.read()
    value = text.strip()
    if not value:
        raise typer.BadParameter(
            f"the {what} read from stdin is empty (pipe it in, or type it at the prompt)",
            param_hint=param_hint,
        )
    if any(c in value for c in "\r\n"):
        raise typer.BadParameter(
            f"stdin holds more than one line; the {what} is one line", param_hint=param_hint
        )
    return value


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line to stderr and exit non-zero."""
    one_line = " ".join(message.split())
    typer.echo(f"agency-crm: error: {one_line}", err=True)
    sys.exit(code)


def run(app: Callable[[], Any]) -> None:
    """Run a typer app, turning known errors into one line and a non-zero exit (1; by kind
    for the service's errors: :func:`exit_code`)."""
    try:
        app()
    except AgencyCrmError as exc:
        fail(exc.one_line(), exit_code(exc))
    except psycopg.Error as exc:
        message = exc.diag.message_primary or str(exc)
        hint = exc.diag.message_hint
        if exc.sqlstate in ("3F000", "42P01", "42883") and "crm" in message:
            hint = "is the agency-crm schema installed? run `agency-crm db upgrade`"
        fail(
            f"database error {exc.sqlstate or ''}: {message}" + (f" (hint: {hint})" if hint else "")
        )
    except KeyboardInterrupt:
        typer.echo("agency-crm: interrupted", err=True)
        sys.exit(130)
