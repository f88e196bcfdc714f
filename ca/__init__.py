"""The dedicated, name-constrained CA whose leaf certificates the proxy presents to Cargo."""
