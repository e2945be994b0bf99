"""The README's examples stay true: its SQL runs as written in psql and gives the output and the
errors it shows, its `db upgrade` transcript is what the command prints, and it links nothing
outside the repository."""

from __future__ import annotations

import itertools
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import conninfo

from agency_crm import schema
from agency_crm.dev.generate import find_pg_tool, seed_readme_data
from tests.helpers.cli import run
from tests.helpers.fixtures import Make

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)
BLOCKS = [(m.group(1), m.group(2)) for m in FENCE.finditer(README)]


def url_of(conn: psycopg.Connection[Any]) -> str:
    info = conn.info
    return conninfo.make_conninfo(
        host=info.host, port=info.port, user=info.user, dbname=info.dbname
    )


def psql(
    conn: psycopg.Connection[Any], script: str, **variables: Any
) -> subprocess.CompletedProcess[str]:
    """The script through psql, as a user runs it (`psql -v name=value`)."""
    command = [find_pg_tool("psql", conn.info.server_version), "-X", "-q", "-P", "footer=off"]
    for name, value in variables.items():
        command += ["-v", f"{name}={value}"]
    command += ["-v", "ON_ERROR_STOP=1", "-d", url_of(conn), "-f", "-"]
    return subprocess.run(
        command, input=script, capture_output=True, text=True, check=False, timeout=60
    )


def lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip("\n").splitlines()]


def analyst_examples() -> list[tuple[str, str]]:
    """(query, output) pairs: an sql block calling an analytics function, then its output."""
    pairs = []
    for (lang, body), (next_lang, output) in itertools.pairwise(BLOCKS):
        if lang == "sql" and body.startswith("SELECT * FROM crm.get_") and next_lang == "text":
            pairs.append((body, output))
    return pairs


def test_the_readme_shows_analyst_queries() -> None:
    assert len(analyst_examples()) >= 4


@pytest.fixture(scope="module")
def demo_data(postgresql_noproc: Any) -> Iterator[tuple[psycopg.Connection[Any], str]]:
    """A clone of the template with the demo's data as of the README's date, and the id of
    the client the README's examples are of."""
    from tests.conftest import janitor, server_url

    template = postgresql_noproc.template_dbname
    with janitor(postgresql_noproc, f"readme_{uuid.uuid4().hex[:8]}", template) as clone:
        with psycopg.connect(server_url(postgresql_noproc, clone.dbname)) as conn:
            client = seed_readme_data(conn)
            yield conn, client


@pytest.mark.parametrize("query, output", analyst_examples(), ids=lambda v: v.split("(")[0][-40:])
def test_each_analyst_example_gives_the_output_shown(
    demo_data: tuple[psycopg.Connection[Any], str], query: str, output: str
) -> None:
    conn, client = demo_data
    assert f"client={client}" in README, "the README names another client id"
    done = psql(conn, query, client=client)
    assert done.returncode == 0, done.stderr
    assert lines(done.stdout) == lines(output)


def walkthrough() -> str:
    [block] = [
        body for lang, body in BLOCKS if lang == "sql" and "INSERT INTO crm.meetings" in body
    ]
    return block


def error_examples() -> list[tuple[str, list[str]]]:
    """(statement, the ERROR and HINT lines shown) of every `=> ` example."""
    found = []
    for lang, body in BLOCKS:
        if lang != "text" or not body.startswith("=> "):
            continue
        for chunk in re.split(r"^=> ", body, flags=re.MULTILINE)[1:]:
            statement, *shown = chunk.strip("\n").splitlines()
            found.append((statement, shown))
    return found


def test_the_app_walkthrough_runs_as_written_and_its_errors_read_as_shown(
    fresh_db: psycopg.Connection[Any],
) -> None:
    make = Make(fresh_db)
    client = make.client(auto_create_deals=True)
    lead = make.lead(client)
    fresh_db.commit()
    done = psql(fresh_db, walkthrough(), client=client["id"], lead=lead["id"])
    assert done.returncode == 0, done.stderr
    # reopened at the stage it was lost at, its probability the stage's again
    assert [c.strip() for c in lines(done.stdout)[-1].split("|")] == ["proposal", "40"]
    meetings = fresh_db.execute(
        "SELECT scheduled_at > now(), meeting_outcome, id FROM crm.meetings "
        "WHERE lead_id = %s ORDER BY scheduled_at",
        (lead["id"],),
    ).fetchall()
    assert [m[:2] for m in meetings] == [(False, "good"), (True, None)]
    deal = fresh_db.execute(
        "SELECT id, stage, closed_at FROM crm.deals WHERE meeting_id = %s", (meetings[0][2],)
    ).fetchone()
    assert deal is not None and (deal[1], deal[2]) == ("proposal", None)
    history = fresh_db.execute(
        "SELECT count(*) FROM crm.deal_stage_history WHERE deal_id = %s", (deal[0],)
    ).fetchone()
    assert history is not None and history[0] >= 4

    examples = error_examples()
    assert {s.split()[1] for s, _ in examples} == {"crm.meetings", "crm.deals"}
    for statement, shown in examples:
        failed = psql(fresh_db, statement, upcoming=meetings[1][2], deal=deal[0])
        assert failed.returncode != 0, statement
        # psql also prints where in the trigger the error was raised; the README leaves it out.
        got = [line for line in lines(failed.stderr) if not line.startswith("CONTEXT:  ")]
        assert len(got) == len(shown), (statement, got)
        for line, pattern in zip(got, shown, strict=True):
            regex = ".*".join(re.escape(part) for part in pattern.split("…"))
            assert re.fullmatch(r"(psql:<stdin>:\d+: )?" + regex, line), (line, pattern)


def test_the_upgrade_transcript_is_what_db_upgrade_prints(empty_db_url: str) -> None:
    [transcript] = [
        body for lang, body in BLOCKS if lang == "text" and "$ agency-crm db upgrade" in body
    ]
    runs = [chunk for chunk in re.split(r"^\$ ", transcript, flags=re.MULTILINE) if chunk]
    assert [r.splitlines()[0] for r in runs] == ["agency-crm db upgrade"] * 2

    def normal(text: str) -> list[str]:
        text = re.sub(r"^database: .*$", "database: <db>", text, flags=re.MULTILINE)
        text = re.sub(r"\(\d+ ms\)", "(N ms)", text)
        return lines(re.sub(r"\bcode [0-9a-f]{12}\b", "code <checksum>", text))

    with psycopg.connect(empty_db_url) as conn:
        roles_exist = conn.execute(
            "SELECT count(*) = %s FROM pg_roles WHERE rolname = ANY (%s)",
            (len(schema.ROLES), list(schema.ROLES)),
        ).fetchone() == (True,)
    for shown in runs:
        done = run("db", "upgrade", env={"DATABASE_URL": empty_db_url})
        assert done.returncode == 0, done.stderr
        expected = normal(shown.split("\n", 1)[1])
        if roles_exist:  # roles belong to the server: an earlier install created them
            expected = [line for line in expected if not line.startswith("created roles ")]
        assert normal(done.stdout) == expected
    source = schema.load_source()
    assert f"applied {len(source.code)} function and trigger files" in transcript


@pytest.mark.parametrize(
    "page", ["README.md", *sorted(p.name for p in (ROOT / "docs").glob("*.md"))]
)
def test_links_stay_inside_the_repository(page: str) -> None:
    path = ROOT / page if page == "README.md" else ROOT / "docs" / page
    text = path.read_text()
    assert "../shared" not in text
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"https?://|#", target):
            continue
        local = (path.parent / target.split("#")[0]).resolve()
        assert local.is_relative_to(ROOT) and local.exists(), f"{page}: link {target}"
