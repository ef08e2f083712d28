"""opskit: operations toolkit for medical-insurance system administrators."""

__version__ = "0.1.0"
