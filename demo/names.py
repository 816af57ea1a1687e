"""Name and code material for the demo school-admin database.

Owns the lists the demo generator draws from: Norwegian given and family names with
æ/ø/å, hyphenated and apostrophe names, immigrant-origin names by origin, school place
names and suffixes, made-up org numbers, and the LK20 Grep subject codes per level and
programme. Helpers draw from a caller-supplied ``random.Random`` so the demo stays
deterministic.
"""

from __future__ import annotations

import datetime as dt
import random

from provisioner.core.names import fold

NORWEGIAN_FEMALE = (
    "Nora", "Emma", "Ella", "Maja", "Olivia", "Sofie", "Ingrid", "Sara", "Frida", "Ada",
    "Astrid", "Amalie", "Hedda", "Tiril", "Selma", "Thea", "Ida", "Aurora", "Mathilde", "Vilde",
    "Hanna", "Linnea", "Jenny", "Eva", "Kari", "Anne", "Inger", "Marit", "Liv", "Randi",
    "Solveig", "Hilde", "Siri", "Ragnhild", "Tone", "Kristin", "Camilla", "Silje", "Marte",
    "Ingeborg", "Åse", "Sølvi", "Bjørg", "Gro", "Torild", "Synnøve", "Signe", "Tuva", "Live",
    "Oda", "Mari", "Helene", "Guro", "Karoline", "Ylva", "Eline", "Malin", "Julie", "Martine",
    "Åsne", "Kjersti", "Britt", "Sigrid", "Johanne", "Iselin", "Øydis", "Målfrid",
    "Anne-Lise", "Mari-Ann", "Eli", "Unni", "Heidi", "Lene", "Ane", "Runa", "Dagny",
)  # fmt: skip

NORWEGIAN_MALE = (
    "Jakob", "Emil", "Noah", "Oliver", "Filip", "William", "Lucas", "Liam", "Henrik", "Aksel",
    "Kasper", "Theodor", "Magnus", "Johannes", "Isak", "Ola", "Per", "Lars", "Knut", "Bjørn",
    "Tor", "Arne", "Geir", "Svein", "Terje", "Morten", "Jørgen", "Håkon", "Øystein", "Ørjan",
    "Sindre", "Eirik", "Even", "Sverre", "Trygve", "Halvor", "Vegard", "Sigurd", "Tobias",
    "Mathias", "Sander", "Elias", "Jonas", "Martin", "Andreas", "Kristian", "Ståle", "Håvard",
    "Torbjørn", "Åsmund", "Pål", "Anders", "Erlend", "Vetle", "Mikkel", "Olav", "Gunnar",
    "Steinar", "Kåre", "Espen", "Rune", "Audun", "Ivar", "Nils", "Gaute", "Bård", "Sølve",
    "Per-Erik", "Karl-Johan", "Jan-Ove", "Odd", "Leif", "Tormod", "Eivind", "Ludvig", "Syver",
)  # fmt: skip

NORWEGIAN_FAMILY = (
    "Hansen", "Johansen", "Olsen", "Larsen", "Andersen", "Pedersen", "Nilsen", "Kristiansen",
    "Jensen", "Karlsen", "Johnsen", "Pettersen", "Eriksen", "Berg", "Haugen", "Hagen",
    "Johannessen", "Andreassen", "Jacobsen", "Dahl", "Jørgensen", "Halvorsen", "Henriksen",
    "Lund", "Sørensen", "Jakobsen", "Moen", "Gundersen", "Iversen", "Strand", "Solberg",
    "Svendsen", "Eide", "Knutsen", "Martinsen", "Paulsen", "Bakken", "Kristoffersen",
    "Mathisen", "Lie", "Amundsen", "Rasmussen", "Lunde", "Solheim", "Berge", "Moe", "Nygård",
    "Bakke", "Kristensen", "Fredriksen", "Holm", "Lien", "Hauge", "Christensen", "Andresen",
    "Nielsen", "Knudsen", "Evensen", "Sæther", "Aas", "Myhre", "Hanssen", "Haugland",
    "Thomassen", "Sivertsen", "Simonsen", "Danielsen", "Berntsen", "Sandvik", "Rønning",
    "Arnesen", "Antonsen", "Næss", "Vik", "Haug", "Ellingsen", "Thorsen", "Edvardsen",
    "Birkeland", "Isaksen", "Gulbrandsen", "Ruud", "Aasen", "Strøm", "Myklebust", "Tangen",
    "Ødegård", "Eliassen", "Helland", "Bøe", "Jenssen", "Aune", "Mikkelsen", "Tveit", "Brekke",
    "Abrahamsen", "Madsen", "Sætre", "Ødegaard", "Kvalheim", "Bråthen", "Grønlie", "Løken",
    "Øverland", "Åsheim", "Røed", "Fjærli", "Lønning", "Skjærvø", "Østby", "Håland", "Kjærnes",
    "Dæhlie", "Bjørnstad", "Sørlie", "Grønvold", "Tønnessen", "Våge", "Wiik", "Nordmann",
)  # fmt: skip

# Immigrant-origin names by origin: (female given, male given, family). A family keeps
# one origin, so given and family names fit together as they would in a real register.
ORIGINS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "pakistani": (
        ("Ayesha", "Fatima", "Noor", "Maryam", "Hina", "Sana", "Amna"),
        ("Ahmed", "Ali", "Bilal", "Hamza", "Usman", "Imran", "Zain"),
        ("Khan", "Iqbal", "Hussain", "Ahmed", "Ali", "Butt", "Chaudhry", "Malik"),
    ),
    "somali": (
        ("Hodan", "Ayaan", "Amina", "Fadumo", "Hibo", "Sahra", "Ifrah"),
        ("Abdi", "Mohamed", "Abdirahman", "Hassan", "Yusuf", "Mahad", "Said"),
        ("Abdi", "Warsame", "Osman", "Mohamed", "Farah", "Hassan", "Omar", "Jama"),
    ),
    "vietnamese": (
        ("Linh", "Mai", "Thu", "Lan", "Ngoc", "Huong", "Anh"),
        ("Minh", "Duc", "Tuan", "Huy", "Long", "Khang", "Bao"),
        ("Nguyen", "Tran", "Pham", "Le", "Hoang", "Vu", "Dang", "Do"),
    ),
    "polish": (
        ("Zofia", "Agnieszka", "Natalia", "Katarzyna", "Maja", "Julia", "Zuzanna"),
        ("Jakub", "Piotr", "Tomasz", "Kacper", "Mateusz", "Paweł", "Łukasz"),
        ("Kowalski", "Nowak", "Wiśniewski", "Wójcik", "Kowalczyk", "Lewandowski", "Zieliński"),
    ),
    "arabic": (
        ("Leila", "Yasmin", "Rania", "Nour", "Layla", "Hiba", "Mariam"),
        ("Omar", "Yusuf", "Khaled", "Karim", "Tariq", "Mustafa", "Ibrahim"),
        ("Haddad", "Mahmoud", "Hassan", "Saleh", "Khalil", "Nasser", "Al-Sayed"),
    ),
    "eritrean": (
        ("Selam", "Helen", "Semhar", "Luwam", "Yordanos"),
        ("Dawit", "Yonas", "Samuel", "Filmon", "Robel"),
        ("Tesfay", "Gebremariam", "Haile", "Tekle", "Berhane", "Ghebre"),
    ),
    "turkish": (
        ("Elif", "Zeynep", "Ayşe", "Defne", "Ecrin"),
        ("Emre", "Mehmet", "Yusuf", "Mert", "Burak"),
        ("Yılmaz", "Demir", "Şahin", "Çelik", "Kaya", "Öztürk"),
    ),
    "south_asian": (
        ("Priya", "Anjali", "Simran", "Ananya", "Harpreet"),
        ("Arjun", "Rahul", "Gurpreet", "Vikram", "Rohan"),
        ("Singh", "Kaur", "Patel", "Sharma", "D'Souza", "Fernandes"),
    ),
    "irish": (
        ("Siobhan", "Aoife", "Niamh", "Emma", "Ciara"),
        ("Liam", "Sean", "Conor", "Patrick", "Eoin"),
        ("O'Neill", "O'Brien", "Murphy", "Kelly", "O'Connor", "Byrne"),
    ),
    "balkan": (
        ("Lejla", "Emina", "Amra", "Jelena", "Ana"),
        ("Amir", "Edin", "Marko", "Nikola", "Adnan"),
        ("Kovačević", "Petrović", "Jovanović", "Hodžić", "Begić", "Marić"),
    ),
}

# Roughly Oslo's mix: most residents have Norwegian names, a quarter do not.
ORIGIN_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("norwegian", 76.0),
    ("pakistani", 4.0),
    ("somali", 3.5),
    ("polish", 3.5),
    ("vietnamese", 2.0),
    ("arabic", 3.0),
    ("eritrean", 1.5),
    ("turkish", 1.5),
    ("south_asian", 2.0),
    ("irish", 1.0),
    ("balkan", 2.0),
)
_ORIGIN_NAMES = tuple(o for o, _ in ORIGIN_WEIGHTS)
_ORIGIN_CUM = tuple(w for _, w in ORIGIN_WEIGHTS)

# Place-name parts for schools: stem + ending gives "Nordby", "Skogheim", "Furulia" ...
PLACE_FIRST = ("Nordby", "Haugen", "Fjellheim")
PLACE_STEMS = (
    "Nord", "Sør", "Øst", "Vest", "Berg", "Lin", "Hol", "Furu", "Grøn", "Lille", "Stor", "Ås",
    "Bjørk", "Haug", "Skog", "Sand", "Lund", "Fjell", "Eike", "Rosen", "Stein", "Myr", "Bekke",
    "Li", "Vang", "Mo", "Kvern", "Hasle", "Sol", "Blå", "Elve", "Rud", "Fossum", "Gran",
)  # fmt: skip
PLACE_ENDINGS = (
    "by", "heim", "haug", "vang", "dal", "lia", "åsen", "moen", "vollen", "tun", "seter",
    "bakken", "rud", "stad", "jordet", "tangen", "berg", "hagen", "løkka", "vika",
)  # fmt: skip

SCHOOL_SUFFIX = {
    "primary": "skole",
    "lower_secondary": "ungdomsskole",
    "combined": "skole",
    "upper_secondary": "videregående skole",
    "adult": "voksenopplæring",
}

# LK20 Grep fagkoder. Grunnskole: the subject codes of the grunnskole subjects (norsk
# hovedmål, matematikk, engelsk, naturfag, samfunnsfag, KRLE, kroppsøving, musikk, kunst
# og håndverk, mat og helse), used for the subject's groups in every trinn. A slot with
# several codes is a choice (1P or 1T, programfag); each student takes one of them.
GRUNNSKOLE: tuple[tuple[str, ...], ...] = tuple(
    (c,)
    for c in ("NOR0214", "MAT0010", "ENG0012", "NAT0010", "SAF0010", "RLE0030")
    + ("KRO0020", "MUS0010", "KHV0010", "MHE0010")
)
ADULT_SUBJECTS = GRUNNSKOLE[:5]  # grunnskole for voksne: the exam subjects
# Grep (LK20) codes of the demo's education programmes (utdanningsprogram) and, per Vg year,
# the programme area (programområde) its pupils are in; Grep's own codes, e.g. "STUSP1----".
GREP_PROGRAMMES: dict[str, tuple[str, tuple[str, str, str]]] = {
    "ST": ("ST", ("STUSP1----", "STREA2----", "STREA3----")),
    "MD": ("MD", ("MDMDD1----", "MDMUS2----", "MDMUS3----")),
    "HO": ("HS", ("HSHSF1----", "HSHEA2----", "HSHEA3----")),
}


def grep_programme(prefix: str, grade: int | None) -> tuple[str | None, str | None]:
    """(programme, programme area) of a Vg class prefix ("1ST" in grade 11), or (None, None)."""
    known = GREP_PROGRAMMES.get(prefix[1:])
    if known is None or grade is None or not 11 <= grade <= 13:
        return None, None
    return known[0], known[1][grade - 11]


VGS: dict[tuple[str, int], tuple[tuple[str, ...], ...]] = {
    # Studiespesialisering: fellesfag, then programfag blocks (Biologi 1, Fysikk 1, ...).
    ("ST", 11): (("NOR1260",), ("MAT1019", "MAT1021"), ("ENG1007",), ("NAT1007",), ("SAK1001",),
                 ("GEO1003",), ("KRO1017",), ("FSP6218", "FSP6241", "FSP6151")),
    ("ST", 12): (("NOR1264",), ("HIS1009",), ("MAT1023", "REA3056"), ("KRO1018",),
                 ("FSP6219", "FSP6242", "FSP6152"), ("REA3035", "REA3038", "SAM3060"),
                 ("REA3045", "SAM3072", "SAM3057"), ("SPR3029", "REA3048", "SAM3045")),
    ("ST", 13): (("NOR1267",), ("HIS1010",), ("REL1003",), ("KRO1019",), ("REA3036", "REA3039", "SAM3061"),
                 ("REA3046", "SAM3073", "SAM3058"), ("REA3058", "SPR3031", "SAM3054")),
    # Musikk, dans og drama.
    ("MD", 11): (("NOR1260",), ("MAT1019", "MAT1021"), ("ENG1007",), ("NAT1007",), ("KRO1017",),
                 ("MDD2002",), ("MUS2010",), ("MUS2012",), ("MUS2014",)),
    ("MD", 12): (("NOR1264",), ("HIS1009",), ("MAT1023",), ("KRO1018",), ("MUS2011",), ("MUS2013",),
                 ("MUS2016",), ("MUS2018",)),
    ("MD", 13): (("NOR1267",), ("HIS1010",), ("REL1003",), ("KRO1019",), ("MDD3009",), ("MDD3007",)),
    # Helse- og oppvekstfag (yrkesfag): Vg1, then Vg2 helsearbeiderfag; Vg3 is in a workplace.
    ("HO", 11): (("HSF1006",), ("HSF1007",), ("HSF1008",), ("SAK1001",), ("KRO1017",)),
    ("HO", 12): (("HEA2005",), ("HEA2006",), ("HEA2007",), ("KRO1018",)),
}  # fmt: skip
EMAIL_DOMAINS = ("example.org", "example.net", "example.com", "epost.example", "hjemme.example")


def pick_origin(rng: random.Random) -> str:
    """An origin key, Norwegian about three times in four."""
    return rng.choices(_ORIGIN_NAMES, weights=_ORIGIN_CUM)[0]


def given_name(rng: random.Random, origin: str, female: bool) -> str:
    """A given name; Norwegian ones sometimes come as two ("Ola Martin")."""
    if origin == "norwegian":
        pool = NORWEGIAN_FEMALE if female else NORWEGIAN_MALE
        first = rng.choice(pool)
        if rng.random() < 0.15:
            second = rng.choice(pool)
            if second != first:
                return f"{first} {second}"
        return first
    fem, male, _ = ORIGINS[origin]
    return rng.choice(fem if female else male)


def family_name(rng: random.Random, origin: str) -> str:
    """A family name for the origin; a few Norwegian ones double-barrelled (Berg-Olsen)."""
    if origin == "norwegian":
        name = rng.choice(NORWEGIAN_FAMILY)
        if rng.random() < 0.03:
            other = rng.choice(NORWEGIAN_FAMILY)
            if other != name:
                return f"{name}-{other}"
        return name
    return rng.choice(ORIGINS[origin][2])


def gendered_family(name: str, female: bool) -> str:
    """Polish -ski/-cki names take -ska/-cka for women (Kowalski, Kowalska)."""
    if female and (name.endswith("ski") or name.endswith("cki")):
        return name[:-1] + "a"
    return name


def middle_name(rng: random.Random, origin: str) -> str | None:
    """A Norwegian-style middle name (a family-type name) for about one in ten."""
    if origin == "norwegian" and rng.random() < 0.10:
        return rng.choice(NORWEGIAN_FAMILY)
    return None


def place_names(rng: random.Random, count: int) -> list[str]:
    """``count`` distinct place names whose ASCII folds are distinct too (for short names)."""
    combos = [s + e for s in PLACE_STEMS for e in PLACE_ENDINGS]
    rng.shuffle(combos)
    out: list[str] = []
    seen: set[str] = set()
    for raw in (*PLACE_FIRST, *combos):
        # Skip doubled parts such as "Bergberg" or "Haughaug": they read badly.
        name = raw[0] + raw[1:].lower()
        key = fold(name)
        if key in seen or any(name.lower().count(e) > 1 for e in ("berg", "haug", "vang", "rud")):
            continue
        seen.add(key)
        out.append(name)
        if len(out) == count:
            return out
    raise ValueError(f"not enough place names for {count} schools")


def email_for(rng: random.Random, given: str, family: str, used: dict[str, int]) -> str:
    """A private e-mail on a made-up domain, numbered when the plain form is taken."""
    local = f"{fold(given.split()[0].split('-')[0])}.{fold(family)}"
    n = used.get(local, 0)
    used[local] = n + 1
    if n:
        local = f"{local}{n + 1}"
    return f"{local}@{rng.choice(EMAIL_DOMAINS)}"


def mobile(rng: random.Random) -> str:
    """A Norwegian mobile number in the usual spacing: "+47 912 34 567"."""
    d = rng.randrange(10_000_000)
    first = rng.choice("49")
    s = f"{first}{d:07d}"
    return f"+47 {s[:3]} {s[3:5]} {s[5:]}"


def org_number(rng: random.Random, used: set[str]) -> str:
    """A made-up 9-digit organisation number with a valid mod-11 check digit."""
    while True:
        d = [9, rng.randrange(7, 10)] + [rng.randrange(10) for _ in range(6)]
        k = 11 - sum(w * x for w, x in zip((3, 2, 7, 6, 5, 4, 3, 2), d)) % 11
        if k == 10:
            continue
        num = "".join(map(str, d)) + str(0 if k == 11 else k)
        if num not in used:
            used.add(num)
            return num


class Family:
    """Students sharing guardians: the origin and family names their names are drawn from."""

    __slots__ = ("child_family", "child_middle", "children", "family", "g2_family", "n_guardians", "origin")

    def __init__(self, rng: random.Random) -> None:
        self.origin = pick_origin(rng)
        self.family = family_name(rng, self.origin)
        self.n_guardians = 2 if rng.random() < 0.88 else 1
        self.g2_family: str | None = None
        if self.n_guardians == 2 and rng.random() < 0.45:
            other = family_name(rng, self.origin)
            self.g2_family = other if other != self.family else None
        self.child_family = self.family
        self.child_middle: str | None = None
        if self.g2_family:
            r = rng.random()
            if r < 0.2 and "-" not in self.family + self.g2_family:
                self.child_family = f"{self.family}-{self.g2_family}"
            elif r < 0.5 and "-" not in self.g2_family:
                self.child_middle = self.g2_family
        self.children: list[tuple[str, dt.date]] = []
