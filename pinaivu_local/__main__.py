"""`python -m pinaivu_local` is `pinaivu-local`; also the entry point of the one-file binary."""

import sys

from pinaivu_local.children import run_child_module


def run() -> None:
    """A child module when one is asked for (see pinaivu_local.children), else the CLI."""
    if not run_child_module(sys.argv):
        from pinaivu_local.cli import main

        main()


if __name__ == "__main__":
    run()
