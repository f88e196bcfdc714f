"""`cargo-vouch setup`: point Cargo (and, for git indexes fetched by the git CLI, git) at the
local proxy and its CA, and with `--remove` take exactly that back. `command` runs it from
the `plan_setup` / `plan_remove` plans; `records` remembers what to undo."""
