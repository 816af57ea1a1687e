"""The local fake FINT in a process of its own, for the benchmark (the reader's memory apart).

``python -m tests.fake_fint_serve --workdir DIR [--scale demo|oslo]`` generates the school owner
(cached as SQLite in DIR, as tests/fintenv.py does), serves it with ``FakeFint`` and prints one
JSON line on stdout: ``url``, ``token_url``, the credentials, ``ca_file`` and ``sizes`` (entries
per resource). It then reads commands, one a line, on stdin, answering each with one line:
``update_person PERSON_ID FAMILY_NAME`` -> ``ok``; ``quit`` or end of input stops the server.
The credentials are the fake's own throw-away ones; nothing here is a real secret.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from demo.data import DEMO, OSLO
from tests.fake_fint import FakeFint
from tests.fintenv import demo_snapshot


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--scale", choices=("demo", "oslo"), default="demo")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    _url, snap = demo_snapshot(work, OSLO if args.scale == "oslo" else DEMO)
    fake = FakeFint(work / "tls", snap)
    try:
        info = {
            "url": fake.url,
            "token_url": fake.token_url,
            "client_id": fake.client_id,
            "client_secret": fake.client_secret,
            "username": fake.username,
            "password": fake.password,
            "ca_file": str(fake.ca_file),
            "sizes": fake.total_entries(),
            "person": snap.persons[len(snap.persons) // 2].person_id,  # the one the benchmark renames
        }
        del snap
        print(json.dumps(info), flush=True)
        for line in sys.stdin:
            words = line.split()
            if not words or words[0] == "quit":
                break
            if words[0] == "update_person" and len(words) == 3:
                fake.update_person(words[1], family_name=words[2])
                print("ok", flush=True)
            else:
                print(f"unknown command {words[0]!r}", flush=True)
    finally:
        fake.close()


if __name__ == "__main__":
    main()
