"""The PIFU-IMS 1.2 words BAS reads and writes: namespace, group types, role types, Grep grades.

One place for the vocabulary the reader (``sources.pifu.reader``) and the demo writer
(``demo.pifu``) share, so they cannot drift apart. Pure values and tiny pure functions.
"""

from __future__ import annotations

import re

from provisioner.core.model import CONTACT, LEADER, STAFF, STUDENT, TEACHER, TEACHING

NS = "http://pifu.no/xsd/pifu-ims_sas/pifu-ims_sas-1.2"

# grouptype schemes
SCHEME_ORG = "pifu-ims-go-org"
SCHEME_GRP = "pifu-ims-go-grp"

# grouptype typevalues
OWNER = "skoleeier"
SCHOOL = "skole"
GRADE_GROUP = "trinn"
PROGRAMME_GROUP = "utdanningsprogram"
PROGRAMME_AREA_GROUP = "programområde"
# PIFU group type -> canonical group kind (model.SIS_GROUP_KINDS)
GROUP_KINDS: dict[str, str] = {
    "basisgruppe": "basis",
    "undervisningsgruppe": TEACHING,
    "kontaktlærergruppe": CONTACT,
}
KIND_TYPEVALUES: dict[str, str] = {kind: tv for tv, kind in GROUP_KINDS.items()}
# Groups whose memberships describe a student's enrollment: typevalue -> enrollment field.
ENROLLMENT_GROUPS: dict[str, str] = {
    GRADE_GROUP: "grade",
    PROGRAMME_GROUP: "programme",
    PROGRAMME_AREA_GROUP: "programme_area",
}
# The typevalue's required ``level`` attribute: the group's depth in the owner's tree.
TREE_LEVEL: dict[str, str] = {OWNER: "1", SCHOOL: "2"}
GROUP_TREE_LEVEL = "3"

# role/@roletype (IMS Enterprise 1.1): 01 Learner, 02 Instructor, 03 Content developer,
# 04 Member, 05 Manager, 06 Mentor, 07 Administrator, 08 Teaching assistant.
ROLE_STUDENT = "01"
ROLE_TEACHER = "02"
ROLE_MEMBER = "04"
ROLE_MANAGER = "05"
# At a school (a membership of a ``skole`` group): the employment role of each roletype
# other than 01 (a student). 04 Member, 07 Administrator and every other type are staff.
EMPLOYMENT_ROLES: dict[str, str] = {ROLE_TEACHER: TEACHER, ROLE_MANAGER: LEADER}
DEFAULT_EMPLOYMENT_ROLE = STAFF
EMPLOYMENT_ROLETYPES: dict[str, str] = {TEACHER: ROLE_TEACHER, LEADER: ROLE_MANAGER, STAFF: ROLE_MEMBER}
# In a basis, teaching or contact group: roletype -> membership role; others are ignored.
GROUP_ROLES: dict[str, str] = {ROLE_STUDENT: STUDENT, ROLE_TEACHER: TEACHER}
GROUP_ROLETYPES: dict[str, str] = {role: rt for rt, role in GROUP_ROLES.items()}

# userid/@useridtype of the national identity number, tel/@teltype of a mobile number.
NIN_USERID = "personNIN"
MOBILE_TELTYPE = "3"
GUARDIAN_CONTACT = "guardian"
ADULT_PUPIL = "voksen"  # extension/pifu_status[@type=pupilStatus]: adult education

# Grep codes of a year: "aarstrinn1".."aarstrinn10" and "vg1".."vg3", bare or as the last
# part of a Grep URI (http://psi.udir.no/laereplan/aarstrinn/aarstrinn5).
_GRADE_CODE = re.compile(r"(?:.*/)?(?:aarstrinn(?P<gs>[1-9]|10)|vg(?P<vg>[1-3]))", re.IGNORECASE)


def grade_of_code(code: str) -> int | None:
    """The grade a Grep year code names (aarstrinn7 -> 7, vg2 -> 12), or None when it names none."""
    m = _GRADE_CODE.fullmatch(code.strip())
    if m is None:
        return None
    return int(m["gs"]) if m["gs"] else 10 + int(m["vg"])


def code_of_grade(grade: int) -> str:
    """The Grep year code of a grade (the inverse of ``grade_of_code``): 7 -> aarstrinn7, 12 -> vg2."""
    if 1 <= grade <= 10:
        return f"aarstrinn{grade}"
    if 11 <= grade <= 13:
        return f"vg{grade - 10}"
    raise ValueError(f"grade {grade} has no Grep year code (1-10, 11-13)")
