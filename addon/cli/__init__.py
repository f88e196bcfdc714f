"""The `cargo-vouch` command: one module per subcommand (`proxy`, `run`, `setup`, `doctor`,
`enroll`, `ca`), with `main` parsing and dispatching."""
