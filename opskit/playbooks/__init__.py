"""Playbooks: runbooks as YAML files and the step runner (engine.py)."""
