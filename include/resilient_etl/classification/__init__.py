"""
The failure taxonomy's decisions: category and transience of any exception, and its classification.

Importing the package registers the database translator (SQLAlchemy errors typed by driver codes).
"""

from __future__ import annotations

from resilient_etl.classification import database as _database  # noqa: F401 - registers the SQLAlchemy translator
from resilient_etl.classification.classify import Classification, MatrixEntry, classify
from resilient_etl.classification.database import db_error, is_row_error
from resilient_etl.classification.translators import category_of, register

__all__ = ["Classification", "MatrixEntry", "category_of", "classify", "db_error", "is_row_error", "register"]
