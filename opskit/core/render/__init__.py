"""The output formats, one module each; registered in opskit.core.output."""
