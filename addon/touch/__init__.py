"""The FIDO2 touch that stands before every write of a registry with `touch = true`:
`challenge` (which write a touch approves), `enrollment` (the enrolled key, public data
only) and `device` (the key itself). python-fido2 is imported only where a touch is needed."""
