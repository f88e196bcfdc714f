"""`python -m cargo_vouch.cli`: the same as the `cargo-vouch` command."""

from cargo_vouch.cli.main import main

raise SystemExit(main())
