"""A TCP relay that puts a network's latency between a client and a server on loopback.

On loopback a request costs Cargo a fraction of a millisecond, so the proxy's own work
dominates every ratio; a real registry is 20-80 ms away, where round trips dominate
instead. The relay delays each direction's bytes by RTT/2 and each new connection by one
RTT (TCP's handshake), so that new connections, TLS handshakes and HTTP/2 exchanges cost
what they cost over such a network. It does not slow throughput beyond that: reading goes
on while earlier bytes wait for their time (up to MAX_IN_FLIGHT per direction), and there
is no loss and no congestion window. It relays bytes only: TLS goes end to end through it.

Run: `python tests/benchmarks/latency_relay.py --rtt-ms 40 --to 127.0.0.1:PORT [--listen 127.0.0.1:0]`.
It prints `latency relay listening at HOST:PORT` once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass
from functools import partial

#: The line the relay prints when it accepts connections; callers wait for it.
READY = "latency relay listening at"
CHUNK = 64 * 1024
#: Bytes one direction holds while they wait for their time; then it stops reading, as a
#: full TCP window would. 16 MiB per 20 ms is far above what this machine relays.
MAX_IN_FLIGHT = 16 * 1024 * 1024


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        host, _, port = text.rpartition(":")
        if not host or not port.isdigit():
            raise argparse.ArgumentTypeError(f"'{text}' is not HOST:PORT")
        return cls(host.strip("[]"), int(port))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class DelayLine:
    """One direction of a relayed connection: bytes read at t are written at t + delay.

    Each chunk is stamped when it is read and written when it is due, in the order read,
    so a slow writer never holds up the reading of what follows (only MAX_IN_FLIGHT does).
    End of stream is passed on the same way, as a half-close, when it is due.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
        self.reader = reader
        self.writer = writer
        self.delay = delay
        self.queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self.in_flight = 0
        self.room = asyncio.Event()
        self.room.set()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._read())
            tasks.create_task(self._write())

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            chunk = await self.reader.read(CHUNK)
            self.queue.put_nowait((loop.time() + self.delay, chunk))
            if not chunk:  # end of stream, queued like data
                return
            self.in_flight += len(chunk)
            if self.in_flight > MAX_IN_FLIGHT:
                self.room.clear()
                await self.room.wait()

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, chunk = await self.queue.get()
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)  # the latency being simulated
            if not chunk:
                if self.writer.can_write_eof():
                    self.writer.write_eof()
                return
            self.writer.write(chunk)
            await self.writer.drain()
            self.in_flight -= len(chunk)
            if self.in_flight <= MAX_IN_FLIGHT:
                self.room.set()


async def relay_connection(
    client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter, *, target: Endpoint, rtt: float
) -> None:
    """One client connection, relayed to `target` with `rtt` seconds of round trip.

    Relaying starts one RTT after the client connected, as TCP's handshake would let its
    first byte leave; what the client sent meanwhile is read then and delayed by RTT/2
    more, when it would have arrived.
    """
    loop = asyncio.get_running_loop()
    connected = loop.time()
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection(target.host, target.port)
    except OSError:
        client_writer.close()
        return
    try:
        if (wait := connected + rtt - loop.time()) > 0:
            await asyncio.sleep(wait)  # the handshake's round trip being simulated
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(DelayLine(client_reader, upstream_writer, rtt / 2).run())
            tasks.create_task(DelayLine(upstream_reader, client_writer, rtt / 2).run())
    except* OSError:  # a reset on either side: the other direction ends with it
        pass
    finally:
        client_writer.close()
        upstream_writer.close()


async def start_relay(target: Endpoint, rtt_ms: float, listen: Endpoint = Endpoint("127.0.0.1", 0)) -> asyncio.Server:
    """A relay to `target` that accepts connections once this returns (on a free port if
    `listen.port` is 0: see the server's sockets)."""
    handler = partial(relay_connection, target=target, rtt=rtt_ms / 1000)
    return await asyncio.start_server(handler, listen.host, listen.port)


async def serve(target: Endpoint, rtt_ms: float, listen: Endpoint) -> None:
    server = await start_relay(target, rtt_ms, listen)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"{READY} {Endpoint(host, port)} (to {target}, RTT {rtt_ms:g} ms)", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--to", type=Endpoint.parse, required=True, metavar="HOST:PORT", help="where to relay to")
    parser.add_argument("--rtt-ms", type=float, required=True, help="round-trip time to add, in milliseconds")
    parser.add_argument("--listen", type=Endpoint.parse, default=Endpoint("127.0.0.1", 0), metavar="HOST:PORT",
                        help="where to listen (default: 127.0.0.1 and a free port)")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.to, args.rtt_ms, args.listen))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
