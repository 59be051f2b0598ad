"""`python -m pinaivu_local` is `pinaivu-local`."""

from pinaivu_local.cli import main

main()
