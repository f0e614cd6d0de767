"""Contact lists: CSV files in, normalised and placed contacts out, with a report of every row
that could not be used. See `reader` (file format), `normalise` (phone numbers), `placement`
(zones and states), `importer` (the pipeline) and `report` (the reject report)."""
from outbound.lists.columns import FIELDS, parse_column_map
from outbound.lists.errors import (
    BadColumnMap, EmptyFile, FileTooLarge, ListFileError, NoDataRows, NoPhoneColumn, UnreadableFile,
)
from outbound.lists.importer import (
    CampaignNotFound, ImportProgress, ImportResult, find_or_create_campaign, import_contacts, open_list,
)
from outbound.lists.limits import MAX_STORED_REJECTS_PER_REASON, check_list_size, max_list_bytes
from outbound.lists.report import ImportNotFound, import_summary, iter_rejects_csv, safe_cell, write_rejects_csv

__all__ = [
    "FIELDS", "MAX_STORED_REJECTS_PER_REASON", "BadColumnMap", "CampaignNotFound", "EmptyFile", "FileTooLarge", "ImportNotFound", "ImportProgress",
    "ImportResult", "ListFileError", "NoDataRows", "NoPhoneColumn", "UnreadableFile",
    "check_list_size", "find_or_create_campaign", "import_contacts", "max_list_bytes", "import_summary", "iter_rejects_csv", "open_list",
    "parse_column_map", "safe_cell", "write_rejects_csv",
]
