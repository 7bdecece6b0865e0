"""Prevention rules: which reminders are due for a person, from age, sex and vaccinations.

The rules are data (`prevention_rules.json`, versioned, each rule naming its public source),
validated with pydantic when the application starts. Evaluation is a pure function of a
`Person` and a date, so that the rules are tested with any clock. A reminder is due once per
rule and *due period* (e.g. the check-up band 45-50, the dTP booster of age 45): the job
(profile/reminders.py) records what it issued and never issues a period twice.
"""

from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator

RULES_PATH = Path(__file__).with_name("prevention_rules.json")
MAX_AGE = 130


class Rule(BaseModel):
    """One prevention rule and its schedule (one of: bands, at_ages, from_age/every)."""

    id: str = Field(pattern=r"^[a-z0-9-]+$")
    category: Literal["check-up", "vaccination", "screening"]
    title: str
    text: str
    source: str = Field(min_length=10)  # the public health calendar it comes from
    sex: Literal["any", "female", "male"] = "any"
    bands: list[tuple[int, int]] = Field(default_factory=list)
    at_ages: list[int] = Field(default_factory=list)
    then_every: int | None = Field(default=None, ge=1)
    from_age: int | None = Field(default=None, ge=0)
    to_age: int | None = Field(default=None, ge=0)
    every: int | None = Field(default=None, ge=1)
    vaccines: list[str] = Field(default_factory=list)  # system|code
    tolerance_years: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _one_schedule(self) -> "Rule":
        kinds = [bool(self.bands), bool(self.at_ages), self.from_age is not None]
        if sum(kinds) != 1:
            raise ValueError(f"{self.id}: give exactly one of bands, at_ages, from_age")
        if any(lo > hi for lo, hi in self.bands):
            raise ValueError(f"{self.id}: a band ends before it starts")
        if self.at_ages != sorted(set(self.at_ages)):
            raise ValueError(f"{self.id}: at_ages must increase")
        if self.from_age is not None and self.every is None:
            raise ValueError(f"{self.id}: from_age needs every")
        if self.to_age is not None and self.from_age is not None and self.to_age < self.from_age:
            raise ValueError(f"{self.id}: to_age before from_age")
        if any("|" not in v for v in self.vaccines):
            raise ValueError(f"{self.id}: vaccines are system|code")
        return self

    def period(self, age: int) -> tuple[int, int] | None:
        """The due period [start, end) in ages that `age` falls in, or None."""
        for lo, hi in self.bands:
            if lo <= age <= hi:
                return lo, hi + 1
        if self.at_ages:
            marks = list(self.at_ages)
            while self.then_every and marks[-1] + self.then_every <= MAX_AGE:
                marks.append(marks[-1] + self.then_every)
            passed = [m for m in marks if m <= age]
            if not passed:
                return None
            later = [m for m in marks if m > age]
            return passed[-1], later[0] if later else MAX_AGE + 1
        if self.from_age is not None and self.every is not None:
            last = self.to_age if self.to_age is not None else MAX_AGE
            if not self.from_age <= age <= last:
                return None
            start = self.from_age + (age - self.from_age) // self.every * self.every
            return start, min(start + self.every, last + 1)
        return None


class PreventionRules(BaseModel):
    """The versioned rules file."""

    version: str
    comment: str = ""
    rules: list[Rule]

    @model_validator(mode="after")
    def _unique(self) -> "PreventionRules":
        ids = [r.id for r in self.rules]
        if len(ids) != len(set(ids)):
            raise ValueError("rule ids must be unique")
        return self


@cache
def load(path: Path = RULES_PATH) -> PreventionRules:
    """The rules (read and validated once; an invalid file stops the start-up)."""
    return PreventionRules.model_validate_json(path.read_bytes())


@dataclass(frozen=True)
class Person:
    """What the rules read of a patient."""

    patient_id: str
    birth: date
    sex: str | None  # Patient.gender
    vaccinations: tuple[tuple[str, date], ...] = ()  # (system|code, date), completed ones


@dataclass(frozen=True)
class Due:
    """A reminder due: the rule and its due period (e.g. `45-50`, `age-45`)."""

    rule: Rule
    period: str


def age_on(birth: date, today: date) -> int:
    """Full years of age on `today`."""
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def _years_after(birth: date, years: int) -> date:
    try:
        return birth.replace(year=birth.year + years)
    except ValueError:  # born on 29 February
        return birth.replace(year=birth.year + years, day=28)


def due(rules: PreventionRules, person: Person, today: date) -> list[Due]:
    """The reminders due for `person` on `today` (issued or not)."""
    age = age_on(person.birth, today)
    out = []
    for rule in rules.rules:
        if rule.sex != "any" and person.sex != rule.sex:
            continue
        window = rule.period(age)
        if window is None:
            continue
        start, end = window
        if rule.vaccines:
            since = _years_after(person.birth, max(start - rule.tolerance_years, 0))
            wanted = set(rule.vaccines)
            if any(code in wanted and when >= since for code, when in person.vaccinations):
                continue
        label = f"{start}-{end - 1}" if rule.bands else f"age-{start}"
        out.append(Due(rule, label))
    return out
