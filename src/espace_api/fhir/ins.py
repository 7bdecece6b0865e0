"""The INS (NIR-based national health identifier) and its control key.

A NIR is 13 characters (sex, year, month, department, commune, order) followed by a 2-digit key
`97 - (number mod 97)`. Corsica's departments 2A and 2B count as 19 and 18 for the key. The INS
identifier value is the 15 characters NIR + key (the NIA of people without a NIR has the same
form). Test identities use their own OIDs (.10, .11) and the same rule.
"""

import re
from typing import Any

INS_NIR = "urn:oid:1.2.250.1.213.1.4.8"
INS_NIA = "urn:oid:1.2.250.1.213.1.4.9"
INS_TEST_NIR = "urn:oid:1.2.250.1.213.1.4.10"
INS_TEST_NIA = "urn:oid:1.2.250.1.213.1.4.11"
INS_SYSTEMS = frozenset({INS_NIR, INS_NIA, INS_TEST_NIR, INS_TEST_NIA})
_FORM = re.compile(r"^[12378]\d{4}(\d{2}|2A|2B)\d{6}\d{2}$")


def nir_key(nir13: str) -> int:
    """The control key of a 13-character NIR (Corsica: 2A counts as 19, 2B as 18)."""
    number = nir13.upper()
    if number[5:7] == "2A":
        number = number[:5] + "19" + number[7:]
    elif number[5:7] == "2B":
        number = number[:5] + "18" + number[7:]
    return 97 - int(number) % 97


def ins_problem(value: str) -> str | None:
    """Why `value` is not a valid INS (None when it is)."""
    if not _FORM.match(value.upper()):
        return "an INS is 15 characters: a 13-character NIR and a 2-digit key"
    if nir_key(value[:13]) != int(value[13:]):
        return "the INS control key does not match (97 - NIR mod 97)"
    return None


def with_key(nir13: str) -> str:
    """A 13-character NIR with its key appended (for synthetic test identities)."""
    return f"{nir13}{nir_key(nir13):02d}"


def ins_pairs(patient: dict[str, Any]) -> set[tuple[str, str]]:
    """The (system, value) INS identifiers of a Patient's JSON."""
    return {
        (i["system"], i["value"])
        for i in patient.get("identifier") or []
        if isinstance(i, dict) and i.get("system") in INS_SYSTEMS and i.get("value")
    }
