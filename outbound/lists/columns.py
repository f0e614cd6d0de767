"""Which column of a contact list holds which contact field.

Headers are matched after folding case and punctuation ("Phone Number", "phone_number" and
"PHONE-NUMBER" are one name). An explicit `--map col=field` wins over the automatic match.
Columns that map to no field are kept, under their header, in the contact's attributes, so
nothing the file carried is lost.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from outbound.lists.errors import BadColumnMap, NoPhoneColumn

# Contact fields a column can fill. The consent_* ones are stored as attributes for the consent
# import to turn into consent records; the others are Contact columns.
FIELDS = (
    "phone", "first_name", "last_name", "email", "zip", "state", "line_type",
    "consent_kind", "consent_granted_at", "consent_evidence", "consent_channels",
)

_ALIASES = {
    "phone": ("phone", "phone_number", "phonenumber", "phone_no", "mobile", "mobile_phone",
              "mobile_number", "cell", "cell_phone", "cellphone", "cell_number", "number",
              "telephone", "telephone_number", "tel", "msisdn", "contact_number"),
    "first_name": ("first", "first_name", "firstname", "given_name", "fname", "forename"),
    "last_name": ("last", "last_name", "lastname", "surname", "family_name", "lname"),
    "email": ("email", "e_mail", "email_address", "mail"),
    "zip": ("zip", "zip_code", "zipcode", "postal_code", "postalcode", "postcode", "postal", "zip5"),
    "state": ("state", "st", "state_code", "province"),
    "line_type": ("line_type", "linetype", "phone_type", "number_type"),
    "consent_kind": ("consent", "consent_kind", "consent_type"),
    "consent_granted_at": ("consent_granted_at", "consent_date", "consent_at", "consent_timestamp",
                           "consented_at", "opt_in_date", "optin_date", "opted_in_at"),
    "consent_evidence": ("consent_evidence", "consent_source", "opt_in_source", "optin_source",
                         "consent_url", "consent_text"),
    "consent_channels": ("consent_channels", "consent_channel"),
}
FIELD_BY_ALIAS = {alias: field for field, aliases in _ALIASES.items() for alias in aliases}

_NON_ALNUM = re.compile(r"[^0-9a-z]+")


def fold(header: str) -> str:
    """'  Phone-Number ' -> 'phone_number'."""
    return _NON_ALNUM.sub("_", header.strip().lower()).strip("_")


@dataclass(frozen=True)
class ColumnMap:
    header: tuple[str, ...]
    field_index: dict[str, int]                 # field -> column index
    extra: tuple[tuple[int, str], ...]          # (column index, attribute name) of unmapped columns

    @property
    def phone_index(self) -> int:
        return self.field_index["phone"]


def parse_column_map(items: Iterable[str]) -> dict[str, str]:
    """`["Tel Nr=phone", ...]` -> {"Tel Nr": "phone"}; an unknown field names the valid ones."""
    explicit: dict[str, str] = {}
    for item in items:
        column, sep, field = item.rpartition("=")
        column, field = column.strip(), field.strip().lower()
        if not sep or not column or not field:
            raise BadColumnMap(f"--map {item!r}: expected COLUMN=FIELD, for example 'Tel Nr=phone'")
        if field not in FIELDS:
            raise BadColumnMap(f"--map {item!r}: unknown field {field!r}; valid fields: {', '.join(FIELDS)}")
        explicit[column] = field
    return explicit


def map_columns(header: Sequence[str], explicit: dict[str, str] | None = None) -> ColumnMap:
    """The column of each field. The first column matching a field wins; a later one is kept
    as an attribute. Raises NoPhoneColumn, with the header seen, when no column is the phone."""
    header = tuple(name.strip() for name in header)
    explicit = explicit or {}
    _check_explicit_columns_exist(header, explicit)
    field_index: dict[str, int] = {}
    for index, field in _explicit_matches(header, explicit):
        field_index.setdefault(field, index)
    explicitly_mapped = set(field_index.values())
    for index, name in enumerate(header):
        field = FIELD_BY_ALIAS.get(fold(name))
        if index not in explicitly_mapped and field is not None:
            field_index.setdefault(field, index)
    if "phone" not in field_index:
        raise NoPhoneColumn(header)
    mapped = set(field_index.values())
    extra = tuple((i, _attribute_name(name, i)) for i, name in enumerate(header) if i not in mapped)
    return ColumnMap(header=header, field_index=field_index, extra=extra)


def _explicit_matches(header: tuple[str, ...], explicit: dict[str, str]) -> Iterable[tuple[int, str]]:
    folded = {fold(column): field for column, field in explicit.items()}
    for index, name in enumerate(header):
        field = explicit.get(name) or folded.get(fold(name))
        if field:
            yield index, field


def _check_explicit_columns_exist(header: tuple[str, ...], explicit: dict[str, str]) -> None:
    present = set(header) | {fold(name) for name in header}
    missing = [column for column in explicit if column not in present and fold(column) not in present]
    if missing:
        raise BadColumnMap(f"--map names column(s) {', '.join(map(repr, missing))} that the file does not have; "
                           f"header seen: {', '.join(map(repr, header))}")


def _attribute_name(name: str, index: int) -> str:
    return name if name else f"column_{index + 1}"
