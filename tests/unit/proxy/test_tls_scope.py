"""Only registry origins are opened; every other TLS connection is a plain tunnel."""

from __future__ import annotations

from tests.unit.proxy.conftest import SPARSE_CONFIG


async def test_tls_to_other_hosts_is_tunnelled(proxy, isolated_home):
    from mitmproxy import connection, tls
    from mitmproxy.proxy import context

    tctx, state, scope, _ = proxy(SPARSE_CONFIG)

    def hello(host: str, sni: str | None) -> tls.ClientHelloData:
        client = connection.Client(peername=("127.0.0.1", 5000), sockname=("127.0.0.1", 9001))
        ctx = context.Context(client, tctx.options)
        ctx.server = connection.Server(address=(host, 443))
        data = tls.ClientHelloData(ctx, tls.ClientHello(tutils_client_hello(sni)))
        return data

    registry = hello("cargo.corp.example", "cargo.corp.example")
    await scope.tls_clienthello(registry)
    assert not registry.ignore_connection
    other = hello("crates.io", "crates.io")
    await scope.tls_clienthello(other)
    assert other.ignore_connection
    mismatched = hello("cargo.corp.example", "crates.io")
    await scope.tls_clienthello(mismatched)
    assert mismatched.ignore_connection


def tutils_client_hello(sni: str | None) -> bytes:
    """A real TLS ClientHello, produced by Python's ssl module."""
    import ssl

    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    sslobj = context.wrap_bio(incoming, outgoing, server_hostname=sni)
    try:
        sslobj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    record = outgoing.read()
    return record[9:]  # strip the record header (5) and handshake header (4)


async def test_a_dl_host_learned_outside_the_config_is_tunnelled_not_opened(proxy, isolated_home):
    """config.json naming another host must not get a leaf minted for it (the CA's name
    constraints were all that kept Cargo from accepting one)."""
    from mitmproxy import connection, tls
    from mitmproxy.proxy import context

    tctx, state, scope, _ = proxy(SPARSE_CONFIG)
    state.learned_from(state.router.registries[0], {"dl": "https://evil.test/crates"})
    client = connection.Client(peername=("127.0.0.1", 5000), sockname=("127.0.0.1", 9001))
    ctx = context.Context(client, tctx.options)
    ctx.server = connection.Server(address=("evil.test", 443))
    data = tls.ClientHelloData(ctx, tls.ClientHello(tutils_client_hello("evil.test")))
    await scope.tls_clienthello(data)
    assert data.ignore_connection
