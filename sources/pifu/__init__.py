"""The PIFU-IMS 1.2 source: a school owner's full export file, local or picked up over SFTP.

PIFU-IMS (the Norwegian profile of IMS Enterprise 1.1, schema ``pifu-ims_sas-1.2.xsd``,
packaged here) is what most Norwegian school-admin systems export. Modules:
``vocabulary`` (the PIFU words), ``elements`` (tag names, element accessors),
``mapping`` (pure rules that span records), ``schema`` (the XSD and refusing bad files),
``reader`` (one streaming pass into a snapshot), ``files`` (which export to read),
``sftp`` (the pickup), ``source`` (``PifuSource``).

How the export maps to the canonical model (``provisioner.core.model``)::

  canonical field              PIFU-IMS 1.2
  ---------------------------  ----------------------------------------------------------------
  (owner, checked)             group, grouptype typevalue "skoleeier"; its extension
                               pifu_id[@type=organizationNumber] must be the config's owner
                               org number (else the export is refused); it is no school
  School.school_id             group (typevalue "skole") sourcedid/id
  School.org_number            extension/pifu_id[@type=organizationNumber]/pifu_value
  School.name                  description/long, else description/short
  School.short_name            description/short
  School.level                 [source.school_levels] for the school id when set; else from
                               the grades of its enrollments, trinn groups and groups:
                               1-7 primary, 8-10 lower_secondary, both combined, 11-13
                               upper_secondary (grunnskole and VGS mixed: the larger
                               share); no grades but pupils with pupilStatus "voksen":
                               adult; nothing to tell by: "combined", logged (the level is
                               informational: nothing downstream maps it)
  Group.group_id               group (typevalue basisgruppe | undervisningsgruppe |
                               kontaktlærergruppe) sourcedid/id
  Group.kind                   basisgruppe -> basis, undervisningsgruppe -> teaching,
                               kontaktlærergruppe -> contact
  Group.school_id              relationship[@relation=1]/sourcedid/id, followed up through
                               parent groups to the first skole group
  Group.name                   description/short
  Group.grade                  the first extension/pifu_id[@type=grepCode] value that is a
                               Grep year (aarstrinn1..10 -> 1..10, vg1..3 -> 11..13, bare or
                               as the end of a Grep URI)
  Group.subject_code           the first grepCode value that is no Grep year
  Group.start_date, end_date   timeframe/begin, timeframe/end
  Person.person_id             person sourcedid/id (the first sourcedid not marked Old)
  Person.nin                   userid[@useridtype=personNIN]; absent -> None (the person is
                               keyed on the sourcedid alone)
  Person.given_name            name/n/given
  Person.family_name           name/n/family
  Person.middle_name           what name/fn has between the given and the family name
                               ("Ola Johan Nordmann" -> "Johan"), else None
  Person.birth_date            demographics/bday
  Person.email                 email
  Person.mobile                tel[@teltype=3] (PIFU's "+digits")
  Guardianship                 a person's extension/pifu_hasContactPerson[@type=guardian]:
                               guardian_id = its sourcedid/id, student_id = the person
  StudentEnrollment            each role[@roletype=01] of a member of a skole group's
                               membership: school = that group; start/end = the role's
                               timeframe; main_school = role extension pifu_primaryRelation
                               (absent -> true); enrollment_id = "school/person/n", n the
                               role's place among the person's student roles at the school
  StudentEnrollment.grade,     the student's role in a trinn / utdanningsprogram /
    programme, programme_area  programområde group under the same school (its grepCode):
                               the one with the enrollment's time frame, else the one
                               value of those with no other student role's time frame,
                               else None
  Employment                   every other role of a skole membership: roletype 02 teacher,
                               05 leader, any other (04, 07, ...) staff; employment_id as
                               enrollment_id, counted over the person's employee roles
  GroupMembership              role of a member of a basis / teaching / contact group's
                               membership: roletype 01 -> student, 02 -> teacher (others
                               ignored, counted in the log); a membership of a group the
                               export does not have is kept for derive to report

Roles with status 0 (inactive): in a group, no membership; at a school, kept when they
have an end date (their dates say when they ended), skipped (counted) when they have
none. Groups of other types (fag, foresattegruppe, språkopplæring) and their memberships
are ignored, counted in the ``pifu_records_ignored`` log line. Text is trimmed; empty
text is None. Only full exports (``properties/type`` full) are read.
"""

from sources.pifu.source import PifuSource

__all__ = ["PifuSource"]
