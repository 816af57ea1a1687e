"""AD pieces that need no server: passwords, range parsing, DN helpers, config rules."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from connectors import passwords as pw
from connectors.errors import RejectedError
from connectors.ldap.link import guid_dn, ranged_chunk
from provisioner.config import ConfigError
from provisioner.core.dn import is_under as under
from provisioner.core.dn import parent as parent_dn
from provisioner.core.dn import rdn as first_rdn
from provisioner.core.dn import same as same_dn
from tests.sisbuilder import make_config


def test_generated_passwords_meet_complexity_and_avoid_names() -> None:
    seen = set()
    for _ in range(200):
        p = pw.generate(16, ["olanor", "Ola Nordmann"])
        assert len(p) == 16
        assert any(c in pw.UPPER for c in p) and any(c in pw.LOWER for c in p)
        assert any(c in pw.DIGITS for c in p) and any(c in pw.SYMBOLS for c in p)
        # AD's rule: not the account name, nor a display-name token of 3+ characters
        # ("nor" alone is allowed: it is only part of a token).
        assert not any(t in p.lower() for t in ("olanor", "ola", "nordmann"))
        seen.add(p)
    assert len(seen) == 200
    with pytest.raises(ValueError):
        pw.generate(13)


def test_complexity_rule_like_ad() -> None:
    assert pw.meets_complexity("Abcdefgh1234567", [])
    assert not pw.meets_complexity("abcdefgh1234567", [])  # two classes only
    assert not pw.meets_complexity("Xy-olanor-12345", ["olanor"])
    assert not pw.meets_complexity("Xy-Kari-1234567", ["Kari Hansen"])
    assert pw.meets_complexity("Xy-Ka-12345678Q", ["Ka Li"])  # tokens under 3 characters are allowed


def test_password_files_are_private_and_appended(tmp_path: Path) -> None:
    files = pw.PasswordFiles(tmp_path / "pw", "20250101T000000Z-abc")
    p1 = files.add("Nord skole", "olanor", 'Ola "O" Nordmann; jr', "Secret-1")
    files.add("Nord skole", "karhan", "Kari Hansen", "Secret-2")
    p2 = files.add("Sør skole", "aseode", "Åse Ødegård", "Secret-3")
    assert p1 != p2 and p2.name == "new-accounts-sor-skole-20250101T000000Z-abc.csv"
    assert stat.S_IMODE((tmp_path / "pw").stat().st_mode) == 0o700
    for p in (p1, p2):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    text = p1.read_text(encoding="utf-8-sig")
    assert text.splitlines() == [
        "username;display name;password",
        'olanor;"Ola ""O"" Nordmann; jr";Secret-1',
        "karhan;Kari Hansen;Secret-2",
    ]
    link = tmp_path / "pw" / "new-accounts-x-20250101T000000Z-abc.csv"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError):
        files.add("x", "u", "U", "Secret-4")  # a planted symlink is not followed
    assert not (tmp_path / "elsewhere").exists()


def test_ranged_chunk_parsing() -> None:
    assert ranged_chunk({"member;range=0-1499": [b"a", b"b"]}, "member") == ([b"a", b"b"], 1499)
    assert ranged_chunk({"Member;Range=1500-*": [b"c"]}, "member") == ([b"c"], None)
    assert ranged_chunk({"member": [b"a"]}, "member") == ([b"a"], None)
    assert ranged_chunk({"cn": [b"x"]}, "member") is None
    assert ranged_chunk({"member;range=3-*": None}, "member") == ([], None)


def test_dn_helpers() -> None:
    dn = r"CN=Nordmann\, Ola (olanor),OU=NORD\,BY,OU=Skoler,DC=x"
    assert first_rdn(dn) == r"CN=Nordmann\, Ola (olanor)"
    assert parent_dn(dn) == r"OU=NORD\,BY,OU=Skoler,DC=x"
    assert same_dn("OU=A, DC=x", "ou=a,dc=X")
    assert under("CN=u,OU=A,DC=x", "OU=A,DC=x") and not under("CN=u,OU=AB,DC=x", "OU=B,DC=x")
    assert guid_dn("{93D582A6-B995-40A6-9A00-79172CF832E0}") == "<GUID=93d582a6-b995-40a6-9a00-79172cf832e0>"
    with pytest.raises(RejectedError):
        guid_dn("93d582a6>,CN=x")


def test_ad_apply_config_needs_tls_and_credentials(tmp_path: Path) -> None:
    src, state = f"sqlite:///{tmp_path / 's.db'}", f"sqlite:///{tmp_path / 'st.db'}"
    with pytest.raises(ConfigError, match="needs url, ca_file, bind_dn, password_file"):
        make_config(tmp_path, src, state, targets=("ad",), target_settings={"ad": {"mode": "apply"}})
    live = {"mode": "apply", "ca_file": "ca.pem", "bind_dn": "CN=svc", "password_file": "pw"}
    with pytest.raises(ConfigError, match="start_tls = true"):
        make_config(
            tmp_path, src, state, targets=("ad",), target_settings={"ad": {**live, "url": "ldap://dc"}}
        )
    with pytest.raises(ConfigError, match="ldaps:// or ldap://"):
        make_config(
            tmp_path, src, state, targets=("ad",), target_settings={"ad": {**live, "url": "http://dc"}}
        )
    cfg = make_config(
        tmp_path, src, state, targets=("ad",), target_settings={"ad": {**live, "url": "ldaps://dc"}}
    )
    from provisioner.run.targets import build_connector

    with pytest.raises(ConfigError, match="ca_file"):
        build_connector(cfg, "ad")  # the CA file does not exist
    (tmp_path / "ca.pem").write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match="secret file 'pw' not found"):
        build_connector(cfg, "ad")
    (tmp_path / "pw").write_text("s3cret\n", encoding="utf-8")
    conn = build_connector(cfg, "ad")
    assert conn.target == "ad" and "s3cret" not in repr(conn.link)
