"""Trace store: encrypted, signed, pointer-only traces (SQLAlchemy 2)."""

from hei_nw_plugin.store.keys import KeyProvider, LocalKeyFile
from hei_nw_plugin.store.records import NewTrace, StoredRef, VerifyProblem
from hei_nw_plugin.store.sql import SQLTraceStore

__all__ = ["KeyProvider", "LocalKeyFile", "NewTrace", "SQLTraceStore", "StoredRef", "VerifyProblem"]
