#!/usr/bin/env python3
"""woodpecker_stream: a client for Woodpecker's streaming nodes (docs/streaming.md).

It speaks the nodes' HTTP/JSON API (docs/streaming-api.md) with the
Python standard library only (http.client, json, base64, threading); Python
3.8 or later. It is an example: one file to copy, read and adapt.

    from woodpecker_stream import Client

    c = Client(["127.0.0.1:7601", "127.0.0.1:7602", "127.0.0.1:7603"])
    c.create_channel("orders")
    p = c.producer("orders")
    p.send(["hello", b"\\x00\\x01", ("with props", {"k": "v"})])  # -> ["0:0", "0:1", "0:2"]
    for m in c.consumer("orders", start="all"):
        print(m.id, m.payload, m.props)

Run `python3 woodpecker_stream.py --help` for the command line.

What it guarantees
------------------
* Producer: idempotent. Every message carries the producer's id and an
  increasing sequence number. A request that fails in a way that may have
  written it (a connection that drops, 421 because the channel moved, 409
  stale_term, 503 while a new owner opens the channel) is sent again, with
  the same producer id and sequence numbers, to the owner looked up again
  (GET /v1/channels/<name> on any node the client knows). The node answers
  a message it has already made durable with the id it got the first time
  ("dup": true) and never writes it again, so a retry never writes a
  message twice. Acknowledged means durable.
* Consumer: yields every message exactly once and in id order. It asks
  for `from=after&id=<last id>` whenever it has to start again: after a
  pushed stream ends with {"end":"moved"}, after a 421, after a dropped or
  silent connection, after a node died. Ids are checked to increase: a
  message that does not is a ProtocolError, never skipped silently.

Limits and behaviour
--------------------
* Retrying stops after `timeout_s` (default 60 s) without success: the call
  raises UnavailableError (its `last` attribute holds the last failure).
  For a producer the batch then stays `pending`: it may or may not be in
  the channel. `retry()` sends it again with the same sequence numbers
  (never written twice); `discard()` drops it (then some of it may be in
  the channel and some not). `send()` refuses while a batch is pending.
* Refusals are not retried and raise at once: 400 BadRequestError (bad
  JSON, a bad field, a property named wp.*), 404 NotFoundError, 409
  ConflictError (channel exists), 413 TooBigError (a request above
  stream.max_request_bytes, 16 MiB by default, or a message above
  writer.max_entry_bytes), 500 HTTPError (storage failed). The sequence
  numbers of a refused batch are not used again. After a 400 or 404
  nothing of it was written; after a 413 or a 500 the messages before the
  one that failed may have been (docs/streaming-api.md section 2), so the
  batch stays pending like after UnavailableError.
* One request in flight per Producer (its methods hold a lock): sequence
  numbers must reach the node in order. For more throughput send larger
  batches (one request, 1..100000 messages) or use several producers.
* A producer id must not be used by two producers at once, and its
  sequence numbers must keep increasing across restarts: the default id is
  random per Producer object; give a fixed `producer_id` only together with
  a `first_seq` above every sequence number it used before (persist it, or
  use time.time_ns()).
* The node keeps the (seq, id) pairs of a producer's last
  stream.producer_window messages (256 by default): a retry of an older
  message is still not written again, but its id comes back as None.
* Payloads: a str is sent as text (UTF-8; one holding NUL as base64), bytes
  as base64. A consumed Message's `payload` is always bytes (`text` decodes
  it). Properties are str -> str; names starting with "wp." are reserved.
* A Consumer is for one thread; `close()` may be called from another one.
  `last_id` is the id of the last message handed to the caller: to resume
  after a restart, persist it once processed and start with
  start="after", start_id=<it>.
* start="latest" is turned into a position by the first answer, so a
  consumer that moves before its first message misses nothing produced
  after that answer.
* A pushed stream (stream=True) that brings no byte for stream_dead_s
  (25 s; the node sends an empty line every 10 s when idle) is taken as
  dead and opened again on the owner looked up again.
* A node that accepts connections but does not answer (stopped, swamped)
  costs a request REQUEST_TIMEOUT_S (15 s; a long poll its wait_ms more),
  an owner lookup LOOKUP_TIMEOUT_S (5 s) before the next node is asked.
* One TCP connection per request (no keep-alive), plain HTTP (the API has
  no TLS nor authentication), no proxies.
"""

import argparse
import base64
import http.client
import json
import os
import random
import socket
import sys
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

DEFAULT_TIMEOUT_S = 60.0  # an operation retries this long before UnavailableError
REQUEST_TIMEOUT_S = 15.0  # one HTTP request (a long poll adds its wait_ms)
LOOKUP_TIMEOUT_S = 5.0    # one owner lookup on one node (then the next node)
LEARNED_MAX = 64          # owner addresses remembered besides the given nodes
BACKOFF_MIN_S = 0.05      # pause before a retry, doubled up to BACKOFF_MAX_S
BACKOFF_MAX_S = 1.0
STREAM_DEAD_S = 25.0      # a pushed stream silent this long is dead (heartbeat: 10 s)
POLL_MAX_MAX = 10000      # messages in one long poll answer (server's bound)
WAIT_MAX_MS = 60000       # longest long poll (server's bound)


# ---- errors ------------------------------------------------------------------


class WoodpeckerError(Exception):
    """Base of every error this module raises."""


class ProtocolError(WoodpeckerError):
    """The node answered something this client does not understand, or
    broke a promise (a message id that does not increase)."""


class UnavailableError(WoodpeckerError):
    """Retrying gave up (timeout_s passed). `last` is the last failure (an
    exception), if any."""

    def __init__(self, what, last=None):
        super().__init__("%s: gave up retrying%s" % (what, " (last: %s)" % last if last else ""))
        self.last = last


class HTTPError(WoodpeckerError):
    """A node answered with an error status. Attributes: status (int),
    error (the body's "error": "WP_EINVAL", "stale_term", ...; None if the
    body is not the API's JSON), message, body (the decoded JSON or text),
    method, url."""

    def __init__(self, status, body, method, url):
        self.status, self.body, self.method, self.url = status, body, method, url
        if isinstance(body, dict):
            self.error, self.message = body.get("error"), str(body.get("message", ""))
        else:
            text = body if isinstance(body, str) else json.dumps(body) if body is not None else ""
            self.error, self.message = None, text.strip()[:200]
        super().__init__("%d %s: %s (%s %s)" % (status, self.error or http.client.responses.get(
            status, "error"), self.message, method, url))


class BadRequestError(HTTPError):
    """400: malformed JSON, a bad field or query, a reserved property."""


class NotFoundError(HTTPError):
    """404: no such channel (or endpoint)."""


class ConflictError(HTTPError):
    """409: the channel exists (or, from request(), stale_term)."""


class TooBigError(HTTPError):
    """413: a request above stream.max_request_bytes or a message above
    writer.max_entry_bytes."""


class NotOwnerError(HTTPError):
    """421: the node does not own the channel; `owner`, `addr`, `term` as
    the records say (empty when the writer was fenced during the request)."""


class ServiceUnavailableError(HTTPError):
    """503: the channel is being opened, not assigned yet, or metadata is
    unavailable."""


_ERRORS = {400: BadRequestError, 404: NotFoundError, 409: ConflictError, 413: TooBigError,
           421: NotOwnerError, 503: ServiceUnavailableError}


def _http_error(status, body, method, url):
    e = _ERRORS.get(status, HTTPError)(status, body, method, url)
    if isinstance(e, NotOwnerError):
        b = body if isinstance(body, dict) else {}
        e.owner, e.addr, e.term = b.get("owner", ""), b.get("addr", ""), b.get("term")
    return e


class _ConnectError(WoodpeckerError):
    """Could not connect: nothing was sent."""


class _TransportError(WoodpeckerError):
    """The connection failed after the request was (maybe) sent."""


# ---- messages and ids ------------------------------------------------------------


def parse_id(text: str) -> Tuple[int, int]:
    """A message id "S:E" as (segment, entry); ValueError if it is not one."""
    s, sep, e = text.partition(":")
    if not sep or not s.isdigit() or not e.isdigit():
        raise ValueError("not a message id (S:E): %r" % (text,))
    return int(s), int(e)


@dataclass(frozen=True)
class Message:
    """A consumed message. payload is always bytes; producer and seq are
    set when an idempotent producer wrote it."""

    id: str
    payload: bytes
    props: Dict[str, str] = field(default_factory=dict)
    producer: Optional[str] = None
    seq: Optional[int] = None

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")


def _message_from_json(o) -> Message:
    try:
        if "payload" in o:
            payload = o["payload"].encode("utf-8")
        else:
            payload = base64.b64decode(o["payload_b64"], validate=True)
        parse_id(o["id"])
        seq = o.get("seq")
        return Message(o["id"], payload, dict(o.get("props") or {}), o.get("producer"),
                       int(seq) if seq is not None else None)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ProtocolError("not a message: %r (%s)" % (o, e)) from None


def _message_to_json(m) -> dict:
    """str / bytes / (payload, props) / {"payload":..., "props":...} -> the API's object."""
    props = None
    if isinstance(m, dict):
        m, props = m.get("payload"), m.get("props")
    elif isinstance(m, tuple):
        m, props = m
    if isinstance(m, str) and "\x00" not in m:
        o = {"payload": m}
    elif isinstance(m, (str, bytes, bytearray, memoryview)):
        raw = m.encode("utf-8") if isinstance(m, str) else bytes(m)
        o = {"payload_b64": base64.b64encode(raw).decode("ascii")}
    else:
        raise TypeError("a message is str, bytes, (payload, props) or a dict, not %r" % type(m))
    if props:
        o["props"] = dict(props)
    return o


# ---- HTTP --------------------------------------------------------------------------


def _split_addr(addr: str) -> Tuple[str, int]:
    u = urllib.parse.urlsplit(addr if "://" in addr else "http://" + addr)
    if not u.hostname or not u.port:
        raise ValueError("not a host:port: %r" % (addr,))
    return u.hostname, u.port


def _norm_addr(addr: str) -> str:
    h, p = _split_addr(addr.strip())
    return "[%s]:%d" % (h, p) if ":" in h else "%s:%d" % (h, p)


def _decode_body(data: bytes):
    text = data.decode("utf-8", "replace")
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        return text


def _why(e) -> str:
    return str(e) or type(e).__name__


def _open(addr, method, path, body, timeout_s):
    """Sends one request; (connection, response with its headers read, the
    socket). _ConnectError if nothing was sent, _TransportError after."""
    host, port = _split_addr(addr)
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        conn.connect()
    except OSError as e:
        conn.close()
        raise _ConnectError("%s: %s" % (addr, _why(e))) from None
    sock = conn.sock  # the response reads it even after conn lets go of it
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        return conn, conn.getresponse(), sock
    except (OSError, http.client.HTTPException) as e:
        conn.close()
        raise _TransportError("%s %s on %s: %s" % (method, path, addr, _why(e))) from None


def _call(addr, method, path, body=None, timeout_s=REQUEST_TIMEOUT_S):
    """One request to one node: (status, decoded body). Raises
    _ConnectError / _TransportError; never raises on a status."""
    conn, resp, _ = _open(addr, method, path, body, timeout_s)
    try:
        return resp.status, _decode_body(resp.read())
    except (OSError, http.client.HTTPException) as e:
        raise _TransportError("%s %s on %s: %s" % (method, path, addr, _why(e))) from None
    finally:
        conn.close()


def _encode_body(body):
    if body is None or isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


class _Backoff:
    """Pauses between retries, until a deadline."""

    def __init__(self, timeout_s):
        self.deadline = time.monotonic() + timeout_s
        self.pause = BACKOFF_MIN_S

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def wait(self) -> bool:
        """Sleeps before the next try; False if the deadline has passed."""
        left = self.left()
        if left <= 0:
            return False
        time.sleep(min(self.pause * random.uniform(0.5, 1.0), left))
        self.pause = min(self.pause * 2, BACKOFF_MAX_S)
        return True


# ---- client ------------------------------------------------------------------------


class Client:
    """The nodes of one streaming service. `nodes` is a list of "host:port"
    (or one comma-separated string): any streaming nodes; owners learned
    from the channel records are added to them. Thread-safe: producers and
    consumers of several threads may share one Client."""

    def __init__(self, nodes, timeout_s: float = DEFAULT_TIMEOUT_S,
                 request_timeout_s: float = REQUEST_TIMEOUT_S):
        if isinstance(nodes, str):
            nodes = nodes.split(",")
        self._nodes = [_norm_addr(n) for n in nodes if n.strip()]
        if not self._nodes:
            raise ValueError("no node address")
        self._given = len(self._nodes)
        self._next = 0  # the node to ask first: the last one that answered
        self._mu = threading.Lock()
        self.timeout_s = timeout_s
        self.request_timeout_s = request_timeout_s

    # -- plumbing --

    def _learn(self, addr):
        with self._mu:
            if addr and addr not in self._nodes:
                self._nodes.append(addr)
                if len(self._nodes) > self._given + LEARNED_MAX:
                    del self._nodes[self._given]  # the oldest learned one

    def _order(self):
        with self._mu:
            k = self._next % len(self._nodes)
            return self._nodes[k:] + self._nodes[:k]

    def _answered(self, addr):
        with self._mu:
            if addr in self._nodes:
                self._next = self._nodes.index(addr)

    def _any_node(self, method, path, body=None, safe=False, timeout_s=None, request_s=None):
        """Sends to the known nodes in turn until one answers: (status,
        body, addr). A node that cannot be connected to is skipped; one
        that fails after the request went out is skipped too when `safe`
        (a GET), else that is an UnavailableError (it may have been
        applied)."""
        back = _Backoff(self.timeout_s if timeout_s is None else timeout_s)
        last = None
        while True:
            for addr in self._order():
                try:
                    st, b = _call(addr, method, path, body, request_s or self.request_timeout_s)
                except _ConnectError as e:
                    last = e
                    continue
                except _TransportError as e:
                    if not safe:
                        raise UnavailableError("%s %s (may have been applied)" % (method, path),
                                               e) from None
                    last = e
                    continue
                self._answered(addr)
                return st, b, addr
            if not back.wait():
                raise UnavailableError("%s %s: no node answers" % (method, path), last)

    def request(self, method: str, path: str, body=None, addr: Optional[str] = None):
        """One request as it is: `body` a dict/list (sent as JSON), or str /
        bytes (sent as they are). To `addr`, or to any known node (the next
        one when one cannot be connected to; for a GET also when it fails
        after the request went out). Returns the decoded JSON
        answer (None for 204); raises an HTTPError subclass on an error
        status, UnavailableError when no node could be reached."""
        data = _encode_body(body)
        if addr is None:
            st, b, addr = self._any_node(method, path, data, safe=method == "GET")
        else:
            try:
                st, b = _call(_norm_addr(addr), method, path, data, self.request_timeout_s)
            except (_ConnectError, _TransportError) as e:
                raise UnavailableError("%s %s" % (method, path), e) from None
        if st >= 400:
            raise _http_error(st, b, method, "http://%s%s" % (addr, path))
        return b

    # -- channels --

    @staticmethod
    def _path(name, rest=""):
        return "/v1/channels/" + urllib.parse.quote(name, safe="") + rest

    def create_channel(self, name: str) -> dict:
        """Creates a channel: its record (owner "" until the coordinator
        assigns it). ConflictError if it exists, BadRequestError for a bad
        name (1..128 bytes of [A-Za-z0-9._-])."""
        return self.request("POST", "/v1/channels", {"name": name})

    def list_channels(self) -> List[dict]:
        """Every channel's record, each with its "name"."""
        return self.request("GET", "/v1/channels")["channels"]

    def get_channel(self, name: str) -> dict:
        """A channel's record: log, term, owner, addr, created_ms, name."""
        return self.request("GET", self._path(name))

    def delete_channel(self, name: str) -> None:
        """Deletes a channel (its record and log). NotFoundError if none."""
        self.request("DELETE", self._path(name))

    def owner(self, name: str, timeout_s: Optional[float] = None) -> Tuple[str, int]:
        """(addr, term) of the channel's owner, as the records say; waits
        while it is not assigned. NotFoundError, UnavailableError."""
        back = _Backoff(self.timeout_s if timeout_s is None else timeout_s)
        last = None
        while True:
            st, b, at = self._any_node("GET", self._path(name), safe=True,
                                       timeout_s=max(back.left(), 0.01),
                                       request_s=min(LOOKUP_TIMEOUT_S, self.request_timeout_s))
            if st == 200 and isinstance(b, dict) and b.get("addr"):
                addr = _norm_addr(b["addr"])
                self._learn(addr)
                return addr, int(b.get("term", 0))
            if st >= 400 and st != 503:
                raise _http_error(st, b, "GET", "http://%s%s" % (at, self._path(name)))
            last = WoodpeckerError("channel %r: not assigned yet" % name) if st == 200 else \
                _http_error(st, b, "GET", "http://%s%s" % (at, self._path(name)))
            if not back.wait():
                raise UnavailableError("owner of %r" % name, last)

    def producer(self, channel: str, **kw) -> "Producer":
        """A Producer for channel (see Producer for the options)."""
        return Producer(self, channel, **kw)

    def consumer(self, channel: str, **kw) -> "Consumer":
        """A Consumer of channel (see Consumer for the options)."""
        return Consumer(self, channel, **kw)


# ---- producer ----------------------------------------------------------------------


class Producer:
    """An idempotent producer of one channel (see the module's docstring).

    producer_id: 1..128 bytes; default "py-<random>". first_seq: the first
    sequence number (>= 0, default 0). timeout_s: how long a send retries.

    Attributes: retries (requests sent again so far), term (the owner's
    term at the last answer), last_dup (the "dup" flags of the last
    answer), pending (the batch not acknowledged after UnavailableError)."""

    def __init__(self, client: Client, channel: str, producer_id: Optional[str] = None,
                 first_seq: int = 0, timeout_s: Optional[float] = None):
        if first_seq < 0:
            raise ValueError("first_seq must be >= 0")
        self.client, self.channel = client, channel
        self.producer_id = producer_id or "py-" + uuid.uuid4().hex
        self.next_seq = first_seq
        self.timeout_s = client.timeout_s if timeout_s is None else timeout_s
        self.retries = 0
        self.term = None
        self.last_dup: List[bool] = []
        self.pending = None  # the request body of a batch not acknowledged
        self._addr = None
        self._mu = threading.Lock()

    def send_one(self, payload, props: Optional[Dict[str, str]] = None) -> Optional[str]:
        """Sends one message; its id (None: a duplicate older than the
        node's window). See send()."""
        return self.send([(payload, props)])[0]

    def send(self, messages) -> List[Optional[str]]:
        """Sends a batch in one request and returns the messages' ids, in
        order, once all are durable. A message is str, bytes, (payload,
        props) or {"payload": ..., "props": {...}}. Raises HTTPError
        subclasses on refusals (not retried), UnavailableError after
        timeout_s of retries. After UnavailableError, a 413 or a 500 the
        batch may be partly in the channel and stays pending: retry() or
        discard() it before the next send()."""
        msgs = [_message_to_json(m) for m in messages]
        if not msgs:
            return []
        with self._mu:
            if self.pending is not None:
                raise WoodpeckerError("a batch is pending after a failure: retry() or discard() it")
            for m in msgs:
                m["seq"] = self.next_seq
                self.next_seq += 1
            self.pending = {"producer": self.producer_id, "messages": msgs}
            return self._deliver()

    def retry(self) -> List[Optional[str]]:
        """Sends the pending batch again with its sequence numbers: what the
        node already has is not written again. Its ids, like send()."""
        with self._mu:
            if self.pending is None:
                raise WoodpeckerError("no batch is pending")
            return self._deliver()

    def discard(self) -> None:
        """Forgets the pending batch (some of it may be in the channel)."""
        with self._mu:
            self.pending = None

    def _deliver(self):
        path = Client._path(self.channel, "/messages")
        back = _Backoff(self.timeout_s)
        last = None
        while True:
            addr = self._addr
            if addr is None:
                try:
                    addr, self.term = self.client.owner(self.channel, max(back.left(), 0.01))
                except UnavailableError as e:
                    raise UnavailableError("produce to %r" % self.channel, last or e.last) from None
                except HTTPError:
                    self.pending = None  # no such channel: nothing was written
                    raise
            body = dict(self.pending)
            if self.term is not None:
                body["term"] = self.term
            try:
                st, b = _call(addr, "POST", path, _encode_body(body), self.client.request_timeout_s)
            except (_ConnectError, _TransportError) as e:
                st, b, last = None, None, e
            if st == 200:
                return self._accepted(addr, b)
            self._addr = None
            if st is not None:
                last = _http_error(st, b, "POST", "http://%s%s" % (addr, path))
                if st == 421 and last.addr:
                    self._addr = _norm_addr(last.addr)  # the owner the records name
                    self.term = last.term
                elif st == 421 or (st == 409 and last.error == "stale_term") or st == 503:
                    pass  # look the owner up again
                else:  # refused: not retried, its seqs are not used again
                    if st < 500 and st != 413:
                        self.pending = None  # nothing of it was written
                    raise last
            self.retries += 1
            if not back.wait():
                raise UnavailableError("produce to %r" % self.channel, last)

    def _accepted(self, addr, b):
        n = len(self.pending["messages"])
        ids, dup = (b.get("ids"), b.get("dup")) if isinstance(b, dict) else (None, None)
        if not isinstance(ids, list) or len(ids) != n or not isinstance(dup, list):
            raise ProtocolError("produce answer without %d ids: %r" % (n, b))
        self.pending = None
        self._addr = addr
        self.term = b.get("term", self.term)
        self.last_dup = [bool(d) for d in dup]
        return ids


# ---- consumer ----------------------------------------------------------------------


class Consumer:
    """A consumer of one channel (see the module's docstring).

    start: "all" (the first message still in the channel), "latest" (the
    next one produced), "after" or "at" (both with start_id "S:E").
    stream: use the pushed NDJSON stream (else long polls). max_batch:
    messages per long poll (1..10000). wait_ms: longest long poll
    (0..60000). timeout_s: how long one reconnection may retry before
    UnavailableError. stream_dead_s: a pushed stream that brings no byte
    this long is opened again (the node sends an empty line every 10 s
    when idle: below that an idle stream is reopened every stream_dead_s,
    which costs a request and loses nothing).

    Iterate over it (forever), call messages(idle_s) (stops after idle_s
    without a message) or poll() (one long poll). Attributes: last_id,
    reconnects (times it had to ask again: moves, failures), moves (times
    the node named the new owner: a 421 or an {"end":"moved"} line)."""

    def __init__(self, client: Client, channel: str, start: str = "all",
                 start_id: Optional[str] = None, stream: bool = False, max_batch: int = 100,
                 wait_ms: int = 10000, timeout_s: Optional[float] = None,
                 stream_dead_s: float = STREAM_DEAD_S):
        if start not in ("all", "latest", "after", "at"):
            raise ValueError("start is all, latest, after or at, not %r" % (start,))
        if (start in ("after", "at")) != (start_id is not None):
            raise ValueError("start_id goes with start='after' or 'at' (and only with them)")
        if start_id is not None:
            parse_id(start_id)
        if not 1 <= max_batch <= POLL_MAX_MAX or not 0 <= wait_ms <= WAIT_MAX_MS:
            raise ValueError("max_batch is 1..%d, wait_ms 0..%d" % (POLL_MAX_MAX, WAIT_MAX_MS))
        self.client, self.channel, self.stream = client, channel, stream
        self.max_batch, self.wait_ms = max_batch, wait_ms
        self.timeout_s = client.timeout_s if timeout_s is None else timeout_s
        self.stream_dead_s = stream_dead_s
        self._pos = (start, start_id)
        self.last_id: Optional[str] = start_id if start == "after" else None
        self._last_key = parse_id(start_id) if start == "after" else None
        self.reconnects = 0
        self.moves = 0
        self._addr = None
        self._sock = None  # the pushed stream's, while one is open
        self._closed = False
        self._idle_s = None
        self._stop = None

    def close(self) -> None:
        """Ends the consumer (also from another thread): a pushed stream's
        read returns at once, a long poll within its wait_ms; iteration
        stops."""
        self._closed = True
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __iter__(self):
        return self.messages()

    def _query(self, extra):
        kind, mid = self._pos
        q = {"from": kind}
        if mid is not None:
            q["id"] = mid
        q.update(extra)
        return Client._path(self.channel, "/messages") + "?" + urllib.parse.urlencode(q)

    def _take(self, o) -> Message:
        m = _message_from_json(o)
        key = parse_id(m.id)
        if self._last_key is not None and key <= self._last_key:
            raise ProtocolError("message %s after %s: ids must increase" % (m.id, self.last_id))
        self._last_key, self.last_id, self._pos = key, m.id, ("after", m.id)
        return m

    def _failed(self, addr, st, b, path, last, back):
        """After a request that did not give messages: where to go next,
        or raise. Returns the last failure."""
        self._addr = None
        if st is not None:
            last = _http_error(st, b, "GET", "http://%s%s" % (addr, path))
            if st == 421 and last.addr:
                self._addr = _norm_addr(last.addr)
                self.moves += 1
            elif st not in (421, 503):
                raise last
        self.reconnects += 1
        if not back.wait():
            raise UnavailableError("consume %r" % self.channel, last)
        return last

    def _owner(self, back, last):
        if self._addr is None:
            try:
                self._addr = self.client.owner(self.channel, max(back.left(), 0.01))[0]
            except UnavailableError as e:
                raise UnavailableError("consume %r" % self.channel, last or e.last) from None
        return self._addr

    def poll(self, wait_ms: Optional[int] = None) -> List[Message]:
        """One long poll: the next messages (up to max_batch) as soon as
        there is one, or [] after wait_ms. Follows the channel's owner."""
        wait_ms = self.wait_ms if wait_ms is None else max(0, min(int(wait_ms), WAIT_MAX_MS))
        back = _Backoff(self.timeout_s)
        last = None
        while not self._closed:
            addr = self._owner(back, last)
            path = self._query({"max": self.max_batch, "wait_ms": wait_ms})
            try:
                st, b = _call(addr, "GET", path, None,
                              wait_ms / 1000 + self.client.request_timeout_s)
            except (_ConnectError, _TransportError) as e:
                st, b, last = None, None, e
            if st == 200:
                if not isinstance(b, dict) or not isinstance(b.get("messages"), list):
                    raise ProtocolError("consume answer: %r" % (b,))
                out = [self._take(o) for o in b["messages"]]
                if not out and self.last_id is None and b.get("next"):
                    self._pos = ("at", b["next"])  # "latest" (or an empty channel) pinned
                return out
            last = self._failed(addr, st, b, path, last, back)
        return []

    def messages(self, idle_s: Optional[float] = None):
        """Yields messages, each once, in order: forever, or until idle_s
        seconds pass waiting for the next one, or close()."""
        self._idle_s = idle_s
        self._touch()
        if self.stream and self._pos[0] == "latest":
            for m in self.poll(wait_ms=0):  # pins "latest" to a position
                yield m
                self._touch()
        if self.stream:
            yield from self._stream()
            return
        while not self._closed:
            left = self._left()
            if left is not None and left <= 0:
                return
            wait = self.wait_ms if left is None else min(self.wait_ms, int(left * 1000) + 1)
            for m in self.poll(wait_ms=wait):
                yield m
                self._touch()

    def _touch(self):
        self._stop = None if self._idle_s is None else time.monotonic() + self._idle_s

    def _left(self) -> Optional[float]:
        return None if self._stop is None else self._stop - time.monotonic()

    def _stream(self):
        """Yields the messages of pushed streams, opened again after moves
        and failures, until idle or closed."""
        back = _Backoff(self.timeout_s)
        last = None
        while not self._closed:
            left = self._left()
            if left is not None and left <= 0:
                return
            addr = self._owner(back, last)
            path = self._query({"stream": 1})
            try:
                conn, resp, self._sock = _open(addr, "GET", path, None,
                                               self.client.request_timeout_s)
            except (_ConnectError, _TransportError) as e:
                last = self._failed(addr, None, None, path, e, back)
                continue
            try:
                if resp.status != 200:
                    st, b = resp.status, _decode_body(resp.read())
                    last = self._failed(addr, st, b, path, last, back)
                    continue
                before = self.last_id
                ended = yield from self._lines(resp)
                progressed = self.last_id != before
                if progressed:
                    back = _Backoff(self.timeout_s)  # it was served: a fresh budget
                if ended is None:  # idle, or closed
                    return
                if ended == "moved":  # straight to the new owner (self._addr)
                    self.reconnects += 1
                    self.moves += 1
                    if not progressed and not back.wait():
                        raise UnavailableError("consume %r" % self.channel,
                                               WoodpeckerError("moved again and again"))
                    continue
                last = self._failed(addr, None, None, path, WoodpeckerError(ended), back)
            except (OSError, http.client.HTTPException) as e:
                last = self._failed(addr, None, None, path, _TransportError(_why(e)), back)
            finally:
                self._sock = None
                conn.close()

    def _lines(self, resp):
        """Yields one stream's messages. Returns why it ended: "moved" (and
        self._addr is the new owner), another reason, or None (idle or
        closed)."""
        while not self._closed:
            left = self._left()
            if left is not None and left <= 0:
                return None
            dead = self.stream_dead_s
            self._sock.settimeout(dead if left is None else max(min(dead, left), 0.01))
            try:
                line = resp.readline()
            except socket.timeout:
                left = self._left()
                return None if left is not None and left <= 0 else \
                    "silent for %g s" % self.stream_dead_s
            if not line.endswith(b"\n"):  # EOF, maybe in a line: drop it, go on after last_id
                return None if self._closed else "connection closed"
            if not line.strip():
                continue  # heartbeat
            try:
                o = json.loads(line)
            except ValueError:
                raise ProtocolError("stream line is not JSON: %r" % line[:200]) from None
            if "end" in o:
                moved = o.get("end") == "moved" and o.get("addr")
                self._addr = _norm_addr(o["addr"]) if moved else None
                return "moved" if moved else "stream ended: %s" % o.get("end")
            yield self._take(o)
            self._touch()
        return None


# ---- command line ------------------------------------------------------------------


def _print_json(o):
    print(json.dumps(o, indent=None, separators=(",", ":")))


def _cli_channel(c, a):
    if a.action == "create":
        _print_json(c.create_channel(a.name))
    elif a.action == "list":
        for r in c.list_channels():
            print("%s\tterm %s\towner %s\t%s" % (r["name"], r["term"], r["owner"] or "-",
                                                  r["addr"] or "-"))
    elif a.action == "get":
        _print_json(c.get_channel(a.name))
    elif a.action == "delete":
        c.delete_channel(a.name)
    return 0


def _cli_produce(c, a):
    p = c.producer(a.channel, producer_id=a.producer, first_seq=a.first_seq)

    def flush(batch):
        for i in p.send(batch):
            print(i if i is not None else "(duplicate)")
        sys.stdout.flush()

    if a.messages:
        flush(a.messages)
        return 0
    batch = []
    for line in sys.stdin:
        batch.append(line.rstrip("\n"))
        if len(batch) >= a.batch:
            flush(batch)
            batch = []
    if batch:
        flush(batch)
    return 0


def _cli_consume(c, a):
    start = a.start
    cons = c.consumer(a.channel, start=start, start_id=a.id, stream=a.stream)
    n = 0
    for m in cons.messages(idle_s=a.idle):
        if a.json:
            o = {"id": m.id, "props": m.props}
            try:
                o["payload"] = m.text
            except UnicodeDecodeError:
                o["payload_b64"] = base64.b64encode(m.payload).decode("ascii")
            _print_json(o)
        else:
            print("%s\t%s" % (m.id, m.payload.decode("utf-8", "backslashreplace")))
        sys.stdout.flush()
        n += 1
        if a.count and n >= a.count:
            break
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description="Woodpecker streaming client (docs/streaming.md, HTTP/JSON API).",
        epilog="examples:\n"
               "  %(prog)s channel create orders\n"
               "  %(prog)s produce orders hello world\n"
               "  seq 100 | %(prog)s produce orders --batch 50\n"
               "  %(prog)s consume orders --from all --idle 2\n"
               "  %(prog)s consume orders --from after --id 0:1 --stream",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", default=os.environ.get("WP_STREAM_NODES", "127.0.0.1:7600"),
                    help="streaming nodes host:port,... (default $WP_STREAM_NODES or "
                         "127.0.0.1:7600)")
    ap.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                    help="seconds to retry before giving up (default %(default)s)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    ch = sub.add_parser("channel", help="create, list, get or delete channels")
    ch.add_argument("action", choices=["create", "list", "get", "delete"])
    ch.add_argument("name", nargs="?")
    pr = sub.add_parser("produce", help="produce messages (arguments, or stdin lines); prints ids")
    pr.add_argument("channel")
    pr.add_argument("messages", nargs="*")
    pr.add_argument("--producer", help="producer id (default: a random one)")
    pr.add_argument("--first-seq", type=int, default=0, help="first sequence number")
    pr.add_argument("--batch", type=int, default=100, help="stdin lines per request")
    co = sub.add_parser("consume", help="print messages as id<TAB>payload")
    co.add_argument("channel")
    co.add_argument("--from", dest="start", default="all", choices=["all", "latest", "after", "at"])
    co.add_argument("--id", help="S:E, with --from after|at")
    co.add_argument("--stream", action="store_true", help="pushed NDJSON stream, not long polls")
    co.add_argument("--count", type=int, default=0, help="stop after this many messages")
    co.add_argument("--idle", type=float, default=None, help="stop after this many idle seconds")
    co.add_argument("--json", action="store_true", help="one JSON object per message")
    a = ap.parse_args(argv)
    if a.cmd == "channel" and a.action != "list" and not a.name:
        ap.error("channel %s needs a name" % a.action)
    try:
        c = Client(a.nodes, timeout_s=a.timeout)
        return {"channel": _cli_channel, "produce": _cli_produce,
                "consume": _cli_consume}[a.cmd](c, a)
    except (WoodpeckerError, ValueError) as e:
        print("woodpecker_stream: %s" % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
