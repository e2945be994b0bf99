"""The wheel carries the SQL, so `pip install agency-crm && agency-crm db upgrade` works
outside this repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from agency_crm import schema

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_ships_the_sql_and_reads_it_from_the_package(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("agency_crm-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    repo = schema.load_source(ROOT / "sql")
    expected = {"agency_crm/sql/bootstrap.sql"}
    expected |= {f"agency_crm/sql/migrations/{m.name}" for m in repo.migrations}
    expected |= {f"agency_crm/sql/{c.name}" for c in repo.code}
    assert expected <= names

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "import json, agency_crm, agency_crm.schema as s; src = s.load_source();"
        "print(json.dumps([agency_crm.__file__, [m.checksum for m in src.migrations],"
        " src.code_checksum]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    module_file, checksums, code_checksum = json.loads(done.stdout)
    assert module_file.startswith(str(site))
    assert checksums == [m.checksum for m in repo.migrations]
    assert code_checksum == repo.code_checksum
