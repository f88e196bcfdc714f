"""The demo registry, token issuer and Vouch stand-in; the tests use the same parts."""
