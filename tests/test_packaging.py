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


@pytest.mark.packaging
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
    assert {
        f"agency_crm/sql/queries/{q.name}" for q in (ROOT / "sql" / "queries").glob("*.sql")
    } <= names
    # The fake CRMs are the [sandbox] extra's own distribution, not in the product's wheel.
    assert [n for n in names if n.startswith("agency_crm/sandbox/")] == []

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


def venv_run(venv: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(venv / "bin" / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env=env,
        cwd=venv,
    )


@pytest.mark.packaging
def test_a_plain_install_has_no_sandbox_and_the_sandbox_extra_brings_it(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = ("pip", "install", "-q", "-c", str(ROOT / "constraints.txt"))
    plain = venv_run(venv, *pip, str(ROOT))
    assert plain.returncode == 0, plain.stderr[-3000:]
    probe = "import importlib.util as u; print(u.find_spec('agency_crm.sandbox'))"
    assert venv_run(venv, "python", "-c", probe).stdout.strip() == "None"
    missing = venv_run(venv, "agency-crm", "sandbox", "--hubspot-port", "0", timeout=60)
    assert missing.returncode == 1
    assert missing.stderr.startswith("agency-crm: error: the CRM sandbox is not installed")
    assert "pip install 'agency-crm[sandbox]'" in missing.stderr
    assert venv_run(venv, "agency-crm", "db", "--help", timeout=60).returncode == 0

    extra = venv_run(venv, *pip, f"{ROOT}[sandbox]")
    assert extra.returncode == 0, extra.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.Popen(
        [str(venv / "bin" / "agency-crm"), "sandbox", "--hubspot-port", "0",
         "--pipedrive-port", "0", "--close-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("hubspot   http://127.0.0.1:"), first + proc.stderr.read()  # type: ignore[union-attr]
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert proc.returncode == 0
