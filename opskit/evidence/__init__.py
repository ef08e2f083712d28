"""The auditor evidence pack (R-AUD-2, R-AUD-4): pack.py builds it."""
