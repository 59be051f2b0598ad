"""The one-file binary's entry point: `pinaivu-local`, or one of its child modules (pinaivu_local.children)."""

from pinaivu_local.__main__ import run

run()
