"""The anchor of the benchmark: the blog post's pattern, five lines, a static token on
every request to the registry's host. Not part of cargo-vouch."""
import os


def requestheaders(flow):
    if flow.request.pretty_host == "localhost":
        flow.request.headers["Authorization"] = os.environ["BENCH_TOKEN"]
