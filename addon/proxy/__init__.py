"""The proxy: mitmproxy addons that put the registry's token on exactly its requests
(`addons` lists them in order), the in-process master `run` and `proxy` start, and the
write relay for requests whose token or touch depends on their body."""
