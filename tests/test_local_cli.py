"""End to end through the `bas` command line on the demo: local persons and locks as an admin
uses them (`bas local ...`, `bas lock`, `bas unlock`, then `bas plan`/`bas sync`)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from tests.test_cli import NIN_RE, bas, copy_demo
from tests.test_cli import demo as demo  # noqa: F401 (the module-scoped demo fixture)


def _days() -> tuple[dt.date, str]:
    """Today, and the end date 60 days on: taken when a test starts, not when the module is
    collected (a suite that runs past midnight would compare with yesterday's date)."""
    today = dt.date.today()
    return today, (today + dt.timedelta(days=60)).isoformat()


def _plan(cfg: Path, *args: str) -> dict:
    return json.loads(bas("plan", "--json", *args, config=cfg, check=None).stdout)["plan"]


def _changes(plan: dict, person_id: str) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for t in plan["targets"]:
        for c in t["changes"]:
            if c.get("person_id") == person_id and c["kind"] in ("person", "identity"):
                out.setdefault(t["target"], []).append((c["op"], c["reason"]))
    return out


def test_local_person_added_synced_and_ended(demo: Path, tmp_path: Path) -> None:  # noqa: F811
    cfg = copy_demo(demo, tmp_path)
    today, end = _days()
    add = ["local", "add", "--given", "Vera", "--family", "Vikar", "--school", "SK001", "--role", "teacher"]
    p = bas(*add, "--end", (today - dt.timedelta(days=1)).isoformat(), config=cfg, check=2)
    assert "in the past" in p.stderr
    p = bas(*add, "--end", (today + dt.timedelta(days=400)).isoformat(), config=cfg, check=2)
    assert "more than 366 days ahead" in p.stderr
    typo = ["--given", "Tor", "--family", "Typo", "--school", "SK999", "--role", "staff", "--ref", "typo"]
    p = bas("local", "add", *typo, "--end", end, config=cfg)
    assert "warning: the last run saw no school 'SK999' (schools: SK001" in p.stderr
    p = bas("plan", config=cfg, check=1)  # a data error naming the record; the run goes on
    assert "local person local:1 left out: school 'SK999' is not in the source" in p.stdout + p.stderr
    bas("local", "set", "typo", "--school", "SK002", config=cfg)
    p = bas(*add, "--end", end, "--ref", "vik-1", "--by", "ola", config=cfg)
    assert p.stdout.startswith(
        f"added local:2 Vera Vikar: teacher at SK001 {today.isoformat()}..{end} ref vik-1"
    )
    plan = _plan(cfg)
    changes = _changes(plan, "local:2")
    assert set(changes) == {"core", "ad", "m365", "itslearning", "feide"}
    assert changes["core"] == [
        ("create", "active by local record local:2: teacher at NORDBY; username issued")
    ]
    assert (
        plan["source_counts"]["persons"]
        == json.loads(bas("runs", "--json", config=cfg).stdout)[0]["summary"]["source"]["counts"]["persons"]
    )  # the gate still counts the SIS alone
    bas("sync", config=cfg)
    p = bas("person", "show", "local:2", config=cfg)
    assert "local record local:2: teacher at SK001" in p.stdout
    username = p.stdout.split("username")[1].split()[0]
    assert username == "vervik"
    show = bas("usernames", "show", username, config=cfg).stdout
    assert "local:2" in show and "issued" in show
    assert "itslearning  active" in p.stdout and "feide        active" in p.stdout
    # ended today: the sync of the next day stops their accounts (the lifecycle, not a lock)
    bas("local", "end", "vik-1", "--by", "kari", config=cfg)
    tomorrow = (today + dt.timedelta(days=1)).isoformat()
    bas("sync", "--as-of", tomorrow, config=cfg, check=None)
    changes = _changes(_plan(cfg, "--as-of", tomorrow, "--full"), "local:2")
    assert "itslearning" not in changes and "feide" not in changes  # gone already
    log = bas("changelog", "--person", username, "--json", config=cfg).stdout
    removed = [r for r in json.loads(log) if r["op"] in ("delete", "disable")]
    assert {r["target"] for r in removed} >= {"core", "itslearning", "feide"}
    assert all(
        f"local record local:2 ended on {today.isoformat()} (its end date)" in r["reason"] for r in removed
    )
    audit = bas("local", "audit", "local:2", "--json", config=cfg).stdout
    assert [(r["action"], r["by"]) for r in json.loads(audit)] == [("add", "ola"), ("end", "kari")]


def test_local_import_dry_run_then_apply_and_list_round_trip(demo: Path, tmp_path: Path) -> None:  # noqa: F811
    cfg = copy_demo(demo, tmp_path)
    _, end = _days()
    f = tmp_path / "local.csv"
    f.write_text(
        "ref;given_name;family_name;school;role;end;protected;nin\n"
        f"ext-1;Eva;Ekstern;SK001;staff;{end};no;\n"
        f"skj-1;Skjermet;Person;SK002;teacher;{end};ja;01018012345\n",
        encoding="utf-8",
    )
    p = bas("local", "import", str(f), config=cfg, check=1)
    assert "local.csv:3: the NIN is not valid" in p.stderr and "nothing was imported" in p.stderr
    assert "01018012345" not in p.stderr
    f.write_text(f.read_text(encoding="utf-8").replace("01018012345", ""), encoding="utf-8")
    p = bas("local", "import", str(f), "--dry-run", config=cfg)
    assert "2 would be added" in p.stdout and "dry run: nothing written" in p.stdout
    assert "0 local person(s)" in bas("local", "list", config=cfg).stdout
    p = bas("local", "import", str(f), "--by", "ola", config=cfg)
    assert "line 2: add local:1 ref ext-1" in p.stdout and "2 were added" in p.stdout
    listed = bas("local", "list", "--csv", config=cfg).stdout
    out = tmp_path / "listed.csv"
    out.write_text(listed.replace("Ekstern", "Eksternsen"), encoding="utf-8")
    p = bas("local", "import", str(out), config=cfg)
    assert "set local:1 ref ext-1 (family_name)" in p.stdout and "1 unchanged" in p.stdout
    changes = _changes(_plan(cfg), "local:2")
    assert changes["feide"][0][0] == "create"
    plan_text = bas("plan", "--json", config=cfg, check=None).stdout
    assert not NIN_RE.search(plan_text)


def test_lock_and_unlock_through_the_cli(demo: Path, tmp_path: Path) -> None:  # noqa: F811
    cfg = copy_demo(demo, tmp_path)
    today, end = _days()
    # The demo SIS is generated for today's date, so P0000151's username changes from day to day.
    user = json.loads(bas("person", "show", "P0000151", "--json", config=cfg).stdout)["identity"]["username"]
    p = bas("lock", user, "--reason", "misuse", "--until", end, "--by", "ola", config=cfg)
    assert f"locked P0000151 in ad, m365: locked by ola until {end}: misuse" in p.stdout
    assert "itslearning, feide cannot disable an account: left as they are" in p.stdout
    changes = _changes(_plan(cfg), "P0000151")
    for target in ("ad", "m365"):
        assert changes[target][-1] == ("disable", f"locked by ola until {end}: misuse")
    assert "itslearning" not in changes and "feide" not in changes
    assert not any(op == "delete" for ops in changes.values() for op, _ in ops)
    show = bas("person", "show", user, config=cfg).stdout
    assert f"LOCKED     in every target that can disable since {today.isoformat()}" in show
    assert f"locked by ola until {end}: misuse" in show
    # expiry: the day after --until nothing is disabled any more
    after = (dt.date.fromisoformat(end) + dt.timedelta(days=1)).isoformat()
    changes = _changes(_plan(cfg, "--as-of", after), "P0000151")
    assert not any(op == "disable" for ops in changes.values() for op, _ in ops)
    bas("unlock", user, "--target", "ad", "--by", "kari", config=cfg)
    changes = _changes(_plan(cfg), "P0000151")
    assert [op for op, _ in changes["ad"]] == ["create"] and changes["m365"][-1][0] == "disable"
    bas("unlock", "238420" + "x", config=cfg, check=1)  # nobody by that NIN
    bas("unlock", "P0000151", "--by", "kari", config=cfg)
    assert "disable" not in {op for ops in _changes(_plan(cfg), "P0000151").values() for op, _ in ops}
    p = bas("unlock", user, config=cfg, check=1)
    assert "is not locked" in p.stderr
    show = bas("person", "show", user, config=cfg).stdout
    assert "was locked" in show and "unlocked" in show and "by kari" in show
    audit = json.loads(bas("local", "audit", user, "--json", config=cfg).stdout)
    assert [(r["action"], r["by"]) for r in audit] == [
        ("lock", "ola"),
        ("unlock", "kari"),  # the lock on every target, released for ad ...
        ("lock", "kari"),  # ... kept on m365
        ("unlock", "kari"),
    ]
    bas("lock", user, "--reason", "x", "--target", "feide", config=cfg, check=2)
