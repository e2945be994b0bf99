"""The agency-crm command line.

One module per command group (``db``, ``push``, ``crm``, ``api-token``, ``secrets``,
``sandbox``, ``serve``, ``report``; the last three single commands), each imported only when
its group runs, and each importing its own machinery lazily: ``agency-crm db upgrade`` loads
neither the push runner nor the CRM sandbox.
"""

from __future__ import annotations

import importlib
from typing import Annotated

import typer
from typer._click.core import Command, Context

from agency_crm import __version__
from agency_crm.cli.common import Group, run

# name -> the module whose `app` is that group (or command)
GROUPS = {
    "db": "agency_crm.cli.db",
    "push": "agency_crm.cli.push",
    "crm": "agency_crm.cli.crm",
    "api-token": "agency_crm.cli.api_token",
    "secrets": "agency_crm.cli.secrets",
    "sandbox": "agency_crm.cli.sandbox",
    "serve": "agency_crm.cli.serve",
    "report": "agency_crm.cli.report",
    "demo": "agency_crm.cli.demo",
}


class LazyGroup(Group):
    """The root group: loads a command group's module the first time it is asked for."""

    def list_commands(self, ctx: Context) -> list[str]:
        return [*super().list_commands(ctx), *GROUPS]

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name not in GROUPS:
            return super().get_command(ctx, cmd_name)
        module = importlib.import_module(GROUPS[cmd_name])
        command = typer.main.get_command(module.app)
        command.name = cmd_name
        return command


app = typer.Typer(
    cls=LazyGroup,
    name="agency-crm",
    help="Meetings, deals, analytics and CRM push for lead-generation agencies, in PostgreSQL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"agency-crm {__version__}")
        raise typer.Exit()


@app.callback(
    epilog="Examples:\n\n  $ agency-crm db upgrade --database-url postgresql://app@db/agency"
    "\n\n  $ agency-crm push drain\n\n  $ agency-crm push status"
    "\n\n  $ agency-crm serve --port 8000",
)
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Meetings, deals, analytics and CRM push for lead-generation agencies, in PostgreSQL.

    Every option can also come from the environment variable its help names; run
    `agency-crm COMMAND --help` for a command's options and examples.
    """


def main() -> None:
    """Console entry point: run the app, turning known errors into one line and exit 1."""
    run(app)
