"""A target kind added from outside: one ``register`` call, nothing else edited.

The kind here ("notes") exists only in this test: a config model, a mapping, a lifecycle
policy and a connector that keeps its objects in one JSON file. Registered, a
``[targets.notes]`` table validates, the runner plans and applies it like any other
target, and it shows in the plan, the changelog, `bas status` and `bas config check`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import pytest
from click.testing import CliRunner

from connectors.base import AnchorResolver, Applied, Connector, Reader, StoredObject
from connectors.errors import ConnectorError, RejectedError
from mappings.base import MappingContext
from provisioner import config as config_mod
from provisioner import kinds
from provisioner.cli.main import main
from provisioner.config import Config, ConfigError, TargetBase
from provisioner.core.drift import LiveView, Recorded
from provisioner.core.lifecycle import Policy
from provisioner.core.model import DesiredState, TargetObject
from provisioner.core.plan import Change, Op
from provisioner.kinds import Capabilities, TargetKind, kind_of, register
from provisioner.run import runner
from provisioner.run.runner import EXIT_OK
from provisioner.run.targets import build_reader, check_targets
from provisioner.state.store import StateStore
from tests.sisbuilder import config_toml, small_sis

DAY1, DAY2 = "2025-10-01", "2025-10-02"


class NotesConfig(TargetBase):
    """The test kind's settings: the JSON file its objects are kept in."""

    kind: Literal["notes"] = "notes"
    path: str = "notes.json"
    refuse: str | None = None  # a person key the connector rejects (to see a rejection recorded)


def notes_map_state(state: DesiredState, ctx: MappingContext) -> list[TargetObject]:
    """One note per active person: name and roles; placed by ``home`` (the primary school)."""
    return [
        TargetObject(
            kind="person",
            key=pid,
            attrs={"name": p.display_name, "roles": list(p.roles)},
            username=p.username,
            person_id=pid,
            place={"home": p.primary_school},
        )
        for pid, p in sorted(state.persons.items())
    ]


class NotesConnector(Connector):
    """Keeps every object in one JSON file, written after each change."""

    window = 2  # the executor hands over windows of two (Connector.apply_many applies them in turn)

    def __init__(self, path: Path, refuse: str | None, name: str) -> None:
        self.target, self.path, self.refuse = name, path, refuse
        self.notes: dict[str, dict[str, Any]] = {}

    def begin(self, run_id: str, resolve: AnchorResolver) -> None:
        self.notes = json.loads(self.path.read_text(encoding="utf-8")) if self.path.exists() else {}

    def apply(self, change: Change) -> Applied:
        if change.key == self.refuse:
            raise RejectedError(f"notes: {change.key} refused")
        note = self.notes.setdefault(change.key, {"status": "active"})
        if change.op in (Op.CREATE, Op.UPDATE, Op.MOVE):
            note.update({**change.attrs, **change.place})
        elif change.op is Op.DELETE:
            del self.notes[change.key]
        self.path.write_text(json.dumps(self.notes, sort_keys=True), encoding="utf-8")
        return Applied(anchor=f"note-{change.key}")

    def finish(self, current: Iterable[StoredObject]) -> None:
        pass

    def close(self) -> None:
        pass


class NotesReader(Reader):
    """What the kind's reader factory makes: the notes file, read back for a reconcile."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def notes(self) -> dict[str, Any]:
        return json.loads(self.path.read_text(encoding="utf-8"))

    def read(self, recorded: Sequence[Recorded], cursor: str | None) -> LiveView:
        notes, view = self.notes(), LiveView()
        for rec in recorded:
            note = notes.get(rec.key)
            if note is None:
                view.gone.add(rec.key)
            else:
                view.found(rec, note["status"], {k: v for k, v in note.items() if k != "status"})
        return view

    def close(self) -> None:
        pass


def _path(cfg: Config, name: str) -> Path:
    tcfg = cfg.targets[name]
    assert isinstance(tcfg, NotesConfig)
    return cfg.path(tcfg.path)


def _connector(cfg: Config, name: str) -> Connector:
    tcfg = cfg.targets[name]
    assert isinstance(tcfg, NotesConfig)
    return NotesConnector(_path(cfg, name), tcfg.refuse, name)


NOTES = TargetKind(
    name="notes",
    label="Notes",
    config_model=NotesConfig,
    map_state=notes_map_state,
    placement=frozenset({"home"}),
    policy=lambda tcfg: Policy(disable_first=False, delete_after_days=tcfg.remove_after_days),
    capabilities=lambda tcfg: Capabilities(live=True),
    connector=_connector,
    reader=lambda cfg, name: NotesReader(_path(cfg, name)),
    probe=lambda cfg, name: f"{_path(cfg, name)}: a notes file",
)


@pytest.fixture()
def notes_kind(monkeypatch: pytest.MonkeyPatch) -> Iterator[TargetKind]:
    """The notes kind registered for one test (the registry and the config table restored after)."""
    monkeypatch.setattr(kinds, "KINDS", dict(kinds.KINDS))
    # One table of models (provisioner.target_config, which provisioner.config re-exports):
    # restored in place, so every module that holds it sees the same contents.
    saved = dict(config_mod.TARGET_MODELS)
    yield register(NOTES)
    config_mod.TARGET_MODELS.clear()
    config_mod.TARGET_MODELS.update(saved)


class Env:
    """The small SIS, a config with only the notes target, and a state store."""

    def __init__(self, tmp: Path, **notes: Any) -> None:
        self.tmp, self.sis = tmp, small_sis()
        self.src = f"sqlite:///{tmp / 'sis.db'}"
        self.store = StateStore(f"sqlite:///{tmp / 'state.db'}")
        settings = "".join(f"{k} = {json.dumps(v)}\n" for k, v in notes.items())
        self.config_path = tmp / "bas.toml"
        self.config_path.write_text(
            config_toml(tmp, self.src, self.store.url, targets=()) + "\n[targets.notes]\n" + settings,
            encoding="utf-8",
        )
        self.cfg = config_mod.load(self.config_path)

    def sync(self, as_of: str) -> runner.RunOutcome:
        self.sis.write(self.src)
        return runner.sync(self.cfg, self.store, as_of=as_of)

    def notes(self) -> dict[str, Any]:
        return json.loads((self.tmp / "notes.json").read_text(encoding="utf-8"))

    def cli(self, *args: str) -> Any:
        return CliRunner().invoke(main, ["--config", str(self.config_path), *args])


def ops(out: runner.RunOutcome) -> list[tuple[str, str]]:
    tp = out.plan.target("notes") if out.plan else None
    return sorted((c.op.value, c.key) for c in tp.changes) if tp else []


def test_a_registered_kind_is_planned_applied_and_shown(notes_kind: TargetKind, tmp_path: Path) -> None:
    env = Env(tmp_path)
    assert isinstance(env.cfg.targets["notes"], NotesConfig)  # [targets.notes] needs no kind = "notes"
    assert kind_of("notes") is notes_kind
    check_targets(env.cfg)

    out = env.sync(DAY1)
    assert out.exit_code == EXIT_OK, out.message
    persons = sorted(p.person_id for p in env.sis.persons)
    assert ops(out) == [("create", pid) for pid in persons]
    assert out.results["notes"].status == "applied" and out.results["notes"].ok == len(persons)
    notes = env.notes()
    assert notes["S1"] == {"status": "active", "name": "Ola Nordmann", "roles": ["student"], "home": "NORD"}
    assert {o["key"]: o["anchor"] for o in env.store.objects.iterate("notes")} == {
        pid: f"note-{pid}" for pid in persons
    }

    # A changed name is an update; a new primary school is a move (placement); a leaver goes.
    env.sis.persons = [
        p._replace(family_name="Nordby") if p.person_id == "S1" else p for p in env.sis.persons
    ]
    env.sis.enrollments = [
        e._replace(school_id="SOR") if e.person_id == "S3" else e
        for e in env.sis.enrollments
        if e.person_id != "S5"
    ]
    env.sis.memberships = [m for m in env.sis.memberships if m.person_id != "S5"]
    out = env.sync(DAY2)
    assert out.exit_code == EXIT_OK, out.message
    assert ops(out) == [("delete", "S5"), ("move", "S3"), ("update", "S1")]
    move = next(c for c in out.plan.target("notes").changes if c.op is Op.MOVE)
    assert (move.place, move.attrs, move.before) == ({"home": "SOR"}, {}, {"home": "NORD"})
    assert move.reason == "changed in SIS: home"
    notes = env.notes()
    assert notes["S1"]["name"] == "Ola Nordby" and notes["S3"]["home"] == "SOR" and "S5" not in notes

    log = json.loads(env.cli("changelog", "--target", "notes", "--run", out.run_id, "--json").output)
    assert sorted((r["op"], r["key"], r["result"]) for r in log) == [
        ("delete", "S5", "ok"),
        ("move", "S3", "ok"),
        ("update", "S1", "ok"),
    ]
    status = env.cli("status", "--json")
    assert status.exit_code == 0, status.output
    assert json.loads(status.output)["targets"]["notes"]["last_status"] == "applied"


def test_the_cli_plans_and_checks_a_registered_kind(notes_kind: TargetKind, tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.sis.write(env.src)
    planned = env.cli("plan", "--as-of", DAY1, "--json")
    assert planned.exit_code == EXIT_OK, planned.output
    plan = json.loads(planned.output)["plan"]
    notes = next(tp for tp in plan["targets"] if tp["target"] == "notes")
    assert {c["op"] for c in notes["changes"]} == {"create"} and len(notes["changes"]) == len(env.sis.persons)
    assert not (tmp_path / "notes.json").exists()  # planned, not applied

    checked = env.cli("config", "check")
    assert checked.exit_code == 0, checked.output
    assert "target   notes        kind notes" in checked.output
    assert f"reach    notes        ok: {tmp_path / 'notes.json'}: a notes file" in checked.output
    reader = build_reader(env.cfg, "notes")
    assert isinstance(reader, NotesReader) and reader.path == tmp_path / "notes.json"


def test_a_rejection_in_a_window_is_recorded(notes_kind: TargetKind, tmp_path: Path) -> None:
    env = Env(tmp_path, refuse="S2")
    out = env.sync(DAY1)
    res = out.results["notes"]
    assert (res.ok, res.rejected) == (len(env.sis.persons) - 1, 1)
    assert "S2" not in env.notes() and "S3" in env.notes()
    log = json.loads(env.cli("changelog", "--target", "notes", "--result", "rejected", "--json").output)
    assert [(r["key"], r["op"]) for r in log] == [("S2", "create")]


def test_register_checks_the_record(notes_kind: TargetKind, tmp_path: Path) -> None:
    assert register(NOTES) is NOTES  # the same record again changes nothing
    other = replace(NOTES, label="Other notes")
    with pytest.raises(ValueError, match="registered already"):
        register(other)
    wrong = replace(NOTES, name="memo")
    with pytest.raises(ValueError, match="NotesConfig.kind defaults to 'notes', not 'memo'"):
        register(wrong)
    with pytest.raises(ConfigError, match="unknown target kind 'memo'"):
        kind_of("memo")
    base = config_toml(tmp_path, "sqlite://", "sqlite://", targets=())
    unknown = r"targets\.x\.kind: unknown target kind 'memo'; known kinds: .*'notes'"
    with pytest.raises(ConfigError, match=unknown):
        config_mod.parse(base + '\n[targets.x]\nkind = "memo"\n')
    with pytest.raises(ConfigError, match=r"targets\.notes\.notes\.pathh: Extra inputs are not permitted"):
        config_mod.parse(base + '\n[targets.notes]\npathh = "x"\n')


def test_connector_apply_many_applies_one_by_one_and_stops_at_a_fatal_error(tmp_path: Path) -> None:
    from connectors.errors import FatalError

    class Fails(NotesConnector):
        def apply(self, change: Change) -> Applied:
            if change.key == "F":
                raise FatalError("gone")
            return super().apply(change)

    conn = Fails(tmp_path / "n.json", refuse="R", name="notes")
    conn.begin("r", lambda kind, key: None)
    changes: Sequence[Change] = [
        Change(target="notes", op=Op.CREATE, kind="person", key=k, reason="test", attrs={"name": k})
        for k in ("A", "R", "F", "B")
    ]
    results = conn.apply_many(changes)
    assert isinstance(results[0], Applied) and results[0].anchor == "note-A"
    assert isinstance(results[1], RejectedError)
    assert all(isinstance(r, FatalError) for r in results[2:]) and len(results) == 4
    assert all(isinstance(r, ConnectorError) for r in results[1:])
    assert set(json.loads((tmp_path / "n.json").read_text())) == {"A"}


@pytest.mark.parametrize("name", ["ad", "m365", "itslearning", "feide"])
def test_built_in_kinds_declare_the_place_and_link_names_their_mappings_use(name: str) -> None:
    from provisioner.config import FeideConfig, OwnerConfig
    from tests.test_mapping_itslearning import state as itslearning_state

    kind = kind_of(name)
    owner = OwnerConfig(name="X", org_number="964000000", realm="x.no", mail_domain="x.no")
    tcfg = FeideConfig(base_dn="dc=x,dc=no") if name == "feide" else kind.config_model()
    objs = list(kind.map_state(itslearning_state(), MappingContext(owner, tcfg, "2025-09-01")))
    assert objs and all(set(o.place) <= kind.placement and set(o.links) <= kind.links for o in objs)
    for o in objs:  # one flat record: no name in two of attrs, place and links
        assert len(o.record()) == len(o.attrs) + len(o.place) + len(o.links)
    assert any(o.place for o in objs) == bool(kind.placement)
    assert any(o.links for o in objs) == bool(kind.links)


def test_a_registered_kind_is_reconciled_through_its_reader(notes_kind: TargetKind, tmp_path: Path) -> None:
    """Drift made by hand in the notes file: reported as a plan with reasons, repaired by the executor."""
    env = Env(tmp_path)
    assert env.sync(DAY1).exit_code == EXIT_OK
    notes = env.notes()
    notes["S1"]["name"] = "Changed By Hand"
    notes["S3"]["home"] = "SOR"
    del notes["S2"]
    (tmp_path / "notes.json").write_text(json.dumps(notes), encoding="utf-8")

    found = env.cli("reconcile", "--target", "notes")
    assert found.exit_code == 1, found.output
    assert "person S1: drift: changed outside BAS (name)" in found.output
    assert "person S3: drift: moved outside BAS (home)" in found.output
    assert "person S2: drift: deleted outside BAS; forgotten" in found.output

    fixed = env.cli("reconcile", "--target", "notes", "--repair")
    assert fixed.exit_code == 0, fixed.output  # every drift repaired
    notes = env.notes()
    assert notes["S1"]["name"] == "Ola Nordmann" and notes["S3"]["home"] == "NORD"
    log = json.loads(env.cli("changelog", "--target", "notes", "--json").output)
    repairs = sorted((r["op"], r["key"], r["reason"]) for r in log if r["reason"].startswith("drift"))
    assert [(op, key) for op, key, _ in repairs] == [("forget", "S2"), ("move", "S3"), ("update", "S1")]

    again = env.cli("reconcile", "--target", "notes")
    assert again.exit_code == 0, again.output
    out = env.sync(DAY1)  # the forgotten note is created again by the next sync
    assert ("create", "S2") in ops(out) and "S2" in env.notes()
