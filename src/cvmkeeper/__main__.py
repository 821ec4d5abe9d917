"""Allow ``python -m cvmkeeper``."""

from cvmkeeper.cli import main

main()
