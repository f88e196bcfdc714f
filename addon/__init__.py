"""cargo-vouch: a mitmproxy addon that authenticates Cargo's registry requests with Vouch tokens."""
