"""Source kinds as plug-ins: the [source] table by kind, the registry, drivers, optional columns."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path

import pytest

from provisioner import config
from provisioner.core.model import SourceSnapshot
from provisioner.source_config import SOURCE_MODELS, SourceBase, _with_installed_driver
from sources import registry
from sources.base import Source, snapshot_digests, table_digest
from sources.sql import SqlSource, read_snapshot, source_engine
from tests.sisbuilder import small_sis

HEAD = """
[owner]
name = "Testkommune"
org_number = "123456789"
realm = "test.no"
mail_domain = "test.no"

[state]
url = "sqlite:///state.db"
"""

FINT = """
[source]
kind = "fint"
base_url = "{base}"
token_url = "https://idp.example.no/token"
client_id = "bas"
client_secret_file = "fint-secret"
username = "bas@client.example.no"
password_file = "fint-password"
"""


def _parse(source: str) -> config.Config:
    return config.parse(HEAD + source)


def _error(source: str) -> str:
    with pytest.raises(config.ConfigError) as err:
        _parse(source)
    return str(err.value)


def test_a_source_without_kind_is_sql_as_before() -> None:
    cfg = _parse('[source]\nurl = "sqlite:///sis.db"\n')
    assert cfg.source.kind == "sql"
    assert isinstance(cfg.source, SOURCE_MODELS["sql"])


@pytest.mark.parametrize(
    ("source", "wanted"),
    [
        (
            '[source]\nkind = "csv"\n',
            "source.kind: unknown source kind 'csv'; known kinds: 'sql', 'pifu', 'fint'",
        ),
        ('[source]\nkind = "pifu"\n', "source.path: Field required"),
        ('[source]\nkind = "pifu"\npath = "x"\nurl = "sqlite:///a"\n', "source.url: Extra inputs"),
        ('[source]\nkind = "sql"\n', "source.url: Field required"),
        (
            '[source]\nurl = "sqlite:///a"\n[source.queries]\npupils = "x"\n',
            "unknown query name(s) ['pupils']",
        ),
        (
            '[source]\nkind = "pifu"\npath = "x"\n[source.school_levels]\nS1 = "university"\n',
            "source.school_levels.S1",
        ),
        (
            '[source]\nkind = "pifu"\npath = "x"\n[source.sftp]\nhost = "h"\nusername = "u"\n'
            'known_hosts_file = "k"\n',
            "exactly one of private_key_file or password_file",
        ),
        (FINT.format(base="http://api.example.no"), "base_url must be an https:// URL"),
        (FINT.format(base="https://api.example.no") + "page_size = 0\n", "source.page_size"),
    ],
)
def test_bad_source_tables_name_the_key(source: str, wanted: str) -> None:
    assert wanted in _error(source)


def test_each_kind_validates_with_its_own_model() -> None:
    cfg = _parse('[source]\nkind = "pifu"\npath = "exports"\n[source.school_levels]\nS1 = "adult"\n')
    assert cfg.source.kind == "pifu" and cfg.source.school_levels == {"S1": "adult"}  # type: ignore[attr-defined]
    fint = _parse(FINT.format(base="https://api.example.no"))
    assert fint.source.kind == "fint" and fint.source.scope == "fint-client"  # type: ignore[attr-defined]


def test_every_configurable_kind_is_registered_and_opens_its_plug_in() -> None:
    assert set(registry.SOURCE_KINDS) == set(SOURCE_MODELS) >= {"sql", "pifu", "fint"}
    with pytest.raises(LookupError, match="unknown source kind 'csv'"):
        registry.source_kind("csv")


class _Fixed(Source):
    """A source kind a deployment adds: a snapshot held in memory."""

    kind = "fixed"

    def __init__(self, snap: SourceSnapshot) -> None:
        self.snap = snap

    def read(self) -> SourceSnapshot:
        return self.snap

    def unchanged(self, digests: Mapping[str, str]) -> bool:
        return dict(digests) == snapshot_digests(self.snap)


class _FixedConfig(SourceBase):
    kind: str = "fixed"
    label: str


def test_a_deployment_adds_a_kind_with_one_registration(tmp_path: Path) -> None:
    snap = small_sis().snapshot()
    kind = registry.SourceKind("fixed", _FixedConfig, lambda cfg: _Fixed(snap), "test")
    registry.register(kind)
    try:
        cfg = _parse('[source]\nkind = "fixed"\nlabel = "x"\n')
        with registry.open_source(cfg) as src:
            assert src.read() is snap
            assert src.unchanged(snapshot_digests(snap))
            facts = src.facts({snap.persons[0].person_id})
        assert facts["person"] == [snap.persons[0]._asdict()]
        assert "source.label: Field required" in _error('[source]\nkind = "fixed"\n')
        with pytest.raises(ValueError, match="already registered"):
            registry.register(registry.SourceKind("fixed", _FixedConfig, lambda cfg: _Fixed(snap), "again"))
    finally:
        registry.SOURCE_KINDS.pop("fixed")
        SOURCE_MODELS.pop("fixed")


def test_table_digests_follow_every_record_and_the_order() -> None:
    snap = small_sis().snapshot()
    persons = list(snap.persons)
    assert table_digest("persons", persons) == table_digest("persons", list(persons))
    assert table_digest("persons", persons) != table_digest("persons", persons[::-1])
    changed = [persons[0]._replace(email="new@example.no"), *persons[1:]]
    assert table_digest("persons", persons) != table_digest("persons", changed)


@pytest.mark.parametrize(
    ("url", "installed", "wanted"),
    [
        ("postgresql://u@h/db", {"psycopg"}, "postgresql+psycopg://u@h/db"),
        ("postgresql://u@h/db", {"psycopg2", "psycopg"}, "postgresql://u@h/db"),
        ("mysql://u@h/db", {"pymysql"}, "mysql+pymysql://u@h/db"),
        ("mariadb://u@h/db", {"pymysql"}, "mariadb+pymysql://u@h/db"),
        ("mssql://u@h/db", {"pymssql"}, "mssql+pymssql://u@h/db"),
        ("oracle://u@h/db", {"oracledb"}, "oracle+oracledb://u@h/db"),
        ("postgresql+psycopg2://u@h/db", {"psycopg"}, "postgresql+psycopg2://u@h/db"),
        ("sqlite:///x.db", set(), "sqlite:///x.db"),
    ],
)
def test_a_plain_dialect_takes_the_driver_of_the_installed_extra(
    monkeypatch: pytest.MonkeyPatch, url: str, installed: set[str], wanted: str
) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name in installed else None)
    assert _with_installed_driver(url) == wanted


def test_a_missing_driver_names_the_extra_to_install() -> None:
    assert "install BAS with the extra" in _error('[source]\nurl = "mssql+pyodbc://u@h/db"\n')


def test_query_overrides_without_the_programme_columns_still_read(tmp_path: Path) -> None:
    db = tmp_path / "sis.db"
    sis = small_sis()
    sis.write(f"sqlite:///{db}")
    con = sqlite3.connect(db)
    eid = sis.enrollments[0].enrollment_id
    con.execute(
        "UPDATE student_enrollment SET programme = 'ST', programme_area = 'STUSP1----'"
        " WHERE enrollment_id = ?",
        (eid,),
    )
    con.commit()
    con.close()
    engine = source_engine(f"sqlite:///{db}")
    full = {e.enrollment_id: e for e in read_snapshot(engine).enrollments}
    assert (full[eid].programme, full[eid].programme_area) == ("ST", "STUSP1----")
    old = (
        "SELECT enrollment_id, person_id, school_id, grade, start_date, end_date, main_school"
        " FROM student_enrollment"
    )
    without = {e.enrollment_id: e for e in read_snapshot(engine, {"enrollments": old}).enrollments}
    assert without[eid] == full[eid]._replace(programme=None, programme_area=None)
    assert set(without) == set(full)


def test_the_sql_plug_in_reads_what_read_snapshot_reads(tmp_path: Path) -> None:
    db = tmp_path / "sis.db"
    small_sis().write(f"sqlite:///{db}")
    (tmp_path / "bas.toml").write_text(HEAD + '[source]\nurl = "sqlite:///sis.db"\n')
    cfg = config.load(tmp_path / "bas.toml")
    with registry.open_source(cfg) as src:
        assert isinstance(src, SqlSource)
        snap = src.read()
        assert src.unchanged(snap.digests)
        assert src.describe() == f"sql sqlite:///{db}"
    assert snap == read_snapshot(source_engine(f"sqlite:///{db}"))


def test_a_missing_sqlite_source_is_a_config_error_not_a_new_file(tmp_path: Path) -> None:
    (tmp_path / "bas.toml").write_text(HEAD + '[source]\nurl = "sqlite:///nope.db"\n')
    cfg = config.load(tmp_path / "bas.toml")
    with pytest.raises(config.ConfigError, match="source.url: the SQLite file .*nope.db does not exist"):
        registry.open_source(cfg)
    assert not (tmp_path / "nope.db").exists()


def _example_block(text: str, start: str, end: str | None) -> str:
    """A commented-out alternative [source] of the example config, uncommented."""
    block = text.split(start, 1)[1]
    if end is not None:
        block = block.split(end, 1)[0]
    lines = [line.removeprefix("# ") for line in block.splitlines()[1:] if line.startswith("# ")]
    return "\n".join(line.split("  #")[0] for line in lines) + "\n"


@pytest.mark.parametrize("kind", ["sql", "pifu", "fint"])
def test_the_example_config_documents_each_source_kind(kind: str) -> None:
    text = (Path(__file__).resolve().parents[1] / "config" / "bas.example.toml").read_text()
    head, rest = text.split("[source]\n", 1)
    tail = "[state]\n" + rest.split("[state]\n", 1)[1]
    if kind == "sql":
        cfg = config.parse(text)
    else:
        start = "# -- PIFU-IMS" if kind == "pifu" else "# -- FINT"
        block = _example_block(text, start, "# -- FINT" if kind == "pifu" else "[state]")
        cfg = config.parse(head + block + tail)
    assert cfg.source.kind == kind
