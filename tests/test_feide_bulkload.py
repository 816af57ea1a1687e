"""The Feide full LDIF as an owner bulk-loads it: slapadd offline and ldapadd online, then `bas feide check`.

End to end through the CLI on the demo: `bas demo` writes ``out/feide/latest-full.ldif``;
a real slapd with the eduPerson and norEdu schemas (tests/slapd_server.py) loads it
twice, once with ``slapadd`` into a fresh database directory while slapd is down (then
started on it), once with ``ldapadd`` into a running, empty slapd. Both servers must
then hold the same entries the file holds, and `bas feide check` against each (over
StartTLS, as BAS reads a catalog) must find no errors: every student has Grep codes, the
org and the schools have mail.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from ldap3 import SUBTREE

from connectors.ldap.ldif_read import read_entries
from tests.slapd_server import ADMIN_PASSWORD, SlapdServer, slapd_missing
from tests.test_cli import bas

DEMO_BASE = "dc=demo,dc=kommune,dc=no"  # the demo's [targets.feide] base_dn
LDAPADD = os.environ.get("BAS_TEST_LDAPADD", "/usr/bin/ldapadd")
GRADE = re.compile(
    r"urn:mace:feide\.no:go:grep:http://psi\.udir\.no/laereplan/aarstrinn/(aarstrinn\d+|vg[1-3])"
)

pytestmark = pytest.mark.skipif(slapd_missing() is not None, reason=slapd_missing() or "")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("demo")
    bas("demo", "--dir", str(d))
    return d


def full_ldif(demo: Path) -> Path:
    return demo / "out" / "feide" / "latest-full.ldif"


def catalog(server: SlapdServer) -> dict[str, dict[str, list[str]]]:
    """Every entry under the demo base: normalised DN -> attributes (no operational ones)."""
    conn = server.connect()
    found = conn.extend.standard.paged_search(
        DEMO_BASE, "(objectClass=*)", SUBTREE, attributes=["*"], paged_size=500
    )
    out = {}
    for e in found:
        if e.get("type") == "searchResEntry":
            out[e["dn"].lower()] = {
                k.lower(): sorted(x.decode() for x in v) for k, v in e["raw_attributes"].items()
            }
    conn.unbind()
    return out


def from_file(path: Path) -> dict[str, dict[str, list[str]]]:
    with open(path, encoding="utf-8") as fh:
        return {dn.lower(): {k.lower(): sorted(v) for k, v in a.items()} for dn, a in read_entries(fh)}


def check_config(demo: Path, server: SlapdServer, name: str) -> Path:
    """The demo's config with its Feide target reading ``server`` (StartTLS, the admin bind)."""
    assert server.ca_file is not None
    (demo / f"{name}.secret").write_text(ADMIN_PASSWORD, encoding="utf-8")
    live = (
        f'url = "{server.url}"\nstart_tls = true\nca_file = "{server.ca_file}"\n'
        f'bind_dn = "{server.admin}"\npassword_file = "{name}.secret"\n'
    )
    text = (
        (demo / "bas.toml")
        .read_text(encoding="utf-8")
        .replace("[targets.feide]\n", "[targets.feide]\n" + live, 1)
    )
    path = demo / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def assert_check_clean(demo: Path, server: SlapdServer, name: str, persons: int) -> None:
    p = bas("feide", "check", config=check_config(demo, server, name))
    assert f"{persons} persons, 0 errors" in p.stdout, p.stdout[-3000:]
    assert "Missing Grep codes" not in p.stdout and "[mail]" not in p.stdout


def test_the_full_file_has_no_version_line_and_every_student_a_grade(demo: Path) -> None:
    text = full_ldif(demo).read_text(encoding="utf-8")
    assert text.startswith(f"dn: {DEMO_BASE}\n")
    students = [
        a for a in from_file(full_ldif(demo)).values() if "student" in a.get("edupersonaffiliation", [])
    ]
    assert students and all(any(GRADE.fullmatch(v) for v in a["edupersonentitlement"]) for a in students)


def test_slapadd_offline_then_slapd_serves_it_and_feide_check_is_clean(demo: Path, tmp_path: Path) -> None:
    server = SlapdServer(tmp_path / "offline", tls=True, suffix=DEMO_BASE, load_base=False)
    out = server.slapadd(full_ldif(demo))
    assert out.returncode == 0, out.stderr[-2000:]
    server.start()
    try:
        want = from_file(full_ldif(demo))
        got = catalog(server)
        assert got == want
        persons = sum("inetorgperson" in [c.lower() for c in a["objectclass"]] for a in want.values())
        assert persons > 1000
        assert_check_clean(demo, server, "offline", persons)
    finally:
        server.stop()


def test_ldapadd_into_a_running_slapd_loads_the_same_file(demo: Path, tmp_path: Path) -> None:
    server = SlapdServer(tmp_path / "online", tls=True, suffix=DEMO_BASE, load_base=False)
    server.start()
    try:
        out = subprocess.run(
            [LDAPADD, "-x", "-H", server.url, "-D", server.admin, "-y", str(_password_file(tmp_path)),
             "-f", str(full_ldif(demo))],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-2000:]
        want = from_file(full_ldif(demo))
        assert catalog(server) == want
        persons = sum("inetorgperson" in [c.lower() for c in a["objectclass"]] for a in want.values())
        assert_check_clean(demo, server, "online", persons)
    finally:
        server.stop()


def _password_file(tmp_path: Path) -> Path:
    """The admin password for ldapadd -y (a file, not the command line), without a newline."""
    path = tmp_path / "ldapadd.secret"
    path.write_text(ADMIN_PASSWORD, encoding="utf-8")
    path.chmod(0o600)
    return path


def test_feide_check_reports_a_student_without_grade_codes(demo: Path, tmp_path: Path) -> None:
    text = full_ldif(demo).read_text(encoding="utf-8")
    # Unfold the lines (the reader takes long ones as they are) and drop every Grep grade
    # value of the first Vg1 pupil.
    logical = re.sub(r"\n ", "", text)
    first = re.search(
        r"^dn: (uid=[^\n]+)\n(?:[^\n]+\n)*?eduPersonEntitlement: [^\n]*aarstrinn/vg1\n", logical, re.M
    )
    assert first is not None
    start, end = first.start(), logical.index("\n\n", first.start())
    record = re.sub(
        r"^eduPersonEntitlement: [^\n]*aarstrinn/[^\n]*\n", "", logical[start:end] + "\n", flags=re.M
    )
    bad = tmp_path / "bad.ldif"
    bad.write_text(logical[:start] + record + logical[end + 1 :], encoding="utf-8")
    p = bas("feide", "check", "--ldif", str(bad), "--show", "1000", config=demo / "bas.toml", check=1)
    assert f"{first.group(1)}: Missing Grep codes for student" in p.stdout
    assert " persons, 1 errors, " in p.stdout, p.stdout[-500:]
