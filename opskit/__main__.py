from opskit.cli import run

run()
