"""A few broken records for the demo SIS, so the console's Data quality page has something to show.

``generate`` (demo/data.py) writes a clean SIS: its tests check integrity, and every other
demo test counts on it. ``break_records`` spoils a generated SIS afterwards, the way
school offices' records go wrong, one per kind of place the page files errors under:

- a pupil of the first school gets a mistyped national identity number (``invalid_nin``:
  the pupil is frozen, their accounts kept as they are until the SIS is fixed);
- a group of the second school gets a member keyed by an 11-digit number instead of a
  SIS id (``unknown_person``: the group is frozen; the number is masked wherever shown);
- a group is registered at a school the SIS does not have (``unknown_school``: no school
  is known for it, so only the owner's admins see it).

Only synthetic numbers are used: the mistyped NIN fails its check digits. For SQLite (the
demo's SIS), which does not enforce the reference schema's foreign keys; PostgreSQL
would refuse the unknown member and school.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

BAD_NIN = "12345678901"  # fails the mod-11 check
UNKNOWN_MEMBER = "01017012345"  # a NIN-shaped id no person has
LOST_GROUP, LOST_SCHOOL = "G-NOWHERE", "SK999"


@dataclass(frozen=True)
class Broken:
    """What ``break_records`` spoilt."""

    pupil: str  # person_id of the pupil with the invalid NIN
    group: str  # group_id with the unknown member
    lost_group: str  # group_id at the unknown school


def break_records(url: str, first_school: str = "SK001", second_school: str = "SK002") -> Broken:
    """Spoil the generated SIS at ``url`` (see the module docstring); the same records every time."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as c:
            pupil = c.execute(
                sa.text(
                    "SELECT person_id FROM student_enrollment WHERE school_id = :s AND person_id NOT IN"
                    " (SELECT person_id FROM student_enrollment WHERE school_id != :s)"
                    " ORDER BY person_id LIMIT 1"
                ),
                {"s": first_school},
            ).scalar_one()
            c.execute(sa.text("UPDATE person SET nin = :n WHERE person_id = :p"), {"n": BAD_NIN, "p": pupil})
            group = c.execute(
                sa.text("SELECT group_id FROM school_group WHERE school_id = :s ORDER BY group_id LIMIT 1"),
                {"s": second_school},
            ).scalar_one()
            c.execute(
                sa.text(
                    "INSERT INTO group_membership (group_id, person_id, role) VALUES (:g, :p, 'student')"
                ),
                {"g": group, "p": UNKNOWN_MEMBER, "r": "student"},
            )
            c.execute(
                sa.text(
                    "INSERT INTO school_group (group_id, school_id, kind, name, subject_code, grade,"
                    " start_date, end_date) SELECT :lost, :nowhere, kind, 'Lost group', subject_code, grade,"
                    " start_date, end_date FROM school_group WHERE group_id = :g"
                ),
                {"lost": LOST_GROUP, "nowhere": LOST_SCHOOL, "g": group},
            )
    finally:
        engine.dispose()
    return Broken(str(pupil), str(group), LOST_GROUP)
