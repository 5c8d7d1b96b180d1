#!/usr/bin/env python3
"""test_stream_python.py: the Python example client (examples/python/
woodpecker_stream.py) against a real streaming service.

Starts etcd (the `etcd` on PATH, a fresh data dir under $WP_TEST_TMP, free
ports), a coordinator and 3 streaming nodes ($WP_BIN/woodpecker, one shared
storage.root, meta.type=etcd under a unique meta.prefix, lease 1 s,
assignment passes every 100 ms), then with the example client: channel
admin, produce and consume (long poll and pushed stream), idempotent
retries, bad requests; and, while a producer and two consumers use a
channel, its owner killed -9, the channel moved by a rebalance, its owner
frozen (SIGSTOP) past its lease: every acknowledged message is consumed
exactly once and in order, and the channel holds each message once.

Every process it starts dies with it (PR_SET_PDEATHSIG) and is stopped at
the end, also on failure. Exit status: 0 if every test passed. The data
and logs stay in the printed directory when something failed.

Environment: WP_BIN (the build directory, holding `woodpecker`), WP_SRC
(the source tree), WP_TEST_TMP (scratch space); CTest sets all three.
"""

import ctypes
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("WP_SRC") or os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "examples", "python"))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import woodpecker_stream as ws  # noqa: E402

BIN = os.environ.get("WP_BIN") or os.path.join(SRC, "build")
TMP = os.environ.get("WP_TEST_TMP") or tempfile.gettempdir()
START_TIMEOUT_S = 15.0
N_NODES = 3

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _die_with(parent):
    """A preexec_fn: the child gets SIGKILL when the thread that started it
    (the main thread here) dies."""
    def pre():
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # it died already
            os._exit(126)
    return pre


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Proc:
    """A child process with its output in <dir>/<name>.log."""

    def __init__(self, name, argv, workdir, ready=None):
        self.name, self.argv = name, argv
        self.log = os.path.join(workdir, name + ".log")
        self.addr = None
        with open(self.log, "ab") as err:
            self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE if ready else err, stderr=err,
                                      preexec_fn=_die_with(os.getpid()), cwd=workdir)
        if ready:
            self._wait_ready(ready)

    def _wait_ready(self, marker):
        """Reads stdout lines until one holds `marker`; the text after it
        is the address. Then stops reading (the server ignores SIGPIPE)."""
        end = time.monotonic() + START_TIMEOUT_S
        buf = b""
        try:
            while time.monotonic() < end:
                r, _, _ = select.select([self.p.stdout], [], [], 0.2)
                if r:
                    chunk = os.read(self.p.stdout.fileno(), 4096)
                    if not chunk:
                        break
                    buf += chunk
                    for line in buf.decode("utf-8", "replace").splitlines():
                        if marker in line:
                            self.addr = line.split(marker, 1)[1].strip()
                            return
                elif self.p.poll() is not None:
                    break
            raise RuntimeError("%s did not start (stdout %r); see %s:\n%s"
                               % (self.name, buf, self.log, tail(self.log)))
        finally:
            self.p.stdout.close()

    def alive(self):
        return self.p.poll() is None

    def kill(self, sig=signal.SIGKILL):
        if self.p.poll() is None:
            self.p.send_signal(sig)
        return self.p.wait()

    def stop(self, timeout_s=10.0):
        """SIGTERM, then SIGKILL after timeout_s."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def tail(path, n=30):
    try:
        with open(path, "rb") as f:
            return b"".join(f.readlines()[-n:]).decode("utf-8", "replace")
    except OSError as e:
        return "(%s)" % e


class Cluster:
    """etcd, a coordinator and N_NODES streaming nodes."""

    def __init__(self):
        os.makedirs(TMP, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix="pystream.%d." % os.getpid(), dir=TMP)
        self.etcd = None
        self.coord = None
        self.nodes = []
        self.failed = False
        self.stopped = False

    def start(self):
        if shutil.which("etcd") is None:
            raise RuntimeError("etcd is not on PATH: this test needs it")
        woodpecker = os.path.join(BIN, "woodpecker")
        if not os.access(woodpecker, os.X_OK):
            raise RuntimeError("%s is missing: build the server first (WP_BIN=%s)"
                               % (woodpecker, BIN))
        self._start_etcd()
        common = ["meta.type=etcd", "meta.etcd.endpoints=" + self.etcd_url,
                  "meta.prefix=pystream-%d-%d/" % (os.getpid(), int(time.time())),
                  "storage.root=" + os.path.join(self.dir, "shared"),
                  "stream.lease_ttl_ms=1000", "stream.assign_interval_ms=100",
                  "stream.producer_snapshot_ms=300", "writer.max_entry_bytes=64KiB",
                  "log.level=info"]

        def argv(role, ident):
            a = [woodpecker, role, "-o", "node.id=" + ident, "-o", "stream.listen=127.0.0.1:0"]
            for o in common:
                a += ["-o", o]
            return a

        self.coord = Proc("c0", argv("streaming-coord", "c0"), self.dir,
                          ready="woodpecker streaming-coord: ")
        for i in range(N_NODES):
            self.nodes.append(Proc("n%d" % i, argv("streaming-node", "n%d" % i), self.dir,
                                   ready=" serving on "))

    def _start_etcd(self):
        last = None
        for attempt in range(3):  # fresh ports when a port was taken meanwhile
            cport, pport = free_port(), free_port()
            self.etcd_url = "http://127.0.0.1:%d" % cport
            peer = "http://127.0.0.1:%d" % pport
            data = os.path.join(self.dir, "etcd%d.data" % attempt)
            self.etcd = Proc("etcd%d" % attempt, [
                "etcd", "--name", "m0", "--data-dir", data, "--logger=zap", "--log-level=warn",
                "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", "m0=" + peer, "--initial-cluster-state", "new",
                "--heartbeat-interval", "50", "--election-timeout", "500"], self.dir)
            end = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < end and self.etcd.alive():
                try:
                    with urllib.request.urlopen(self.etcd_url + "/health", timeout=1) as r:
                        if json.load(r).get("health") == "true":
                            return
                except (OSError, ValueError) as e:
                    last = e
                time.sleep(0.05)
            self.etcd.stop()
            print("etcd did not start (try %d, %s):\n%s" % (attempt + 1, last,
                                                           tail(self.etcd.log)), file=sys.stderr)
        raise RuntimeError("etcd did not start")

    def addrs(self):
        return [n.addr for n in self.nodes]

    def node_by_addr(self, addr):
        for n in self.nodes:
            if n.addr == addr:
                return n
        return None

    def stop(self):
        """Stops everything it started (once); keeps the directory on
        failure."""
        if self.stopped:
            return
        self.stopped = True
        for p in self.nodes + [self.coord]:
            if p is not None:
                p.stop()
        if self.etcd is not None:
            self.etcd.stop()
        if self.failed:
            print("\nlogs and data kept in %s" % self.dir, file=sys.stderr)
            for p in self.nodes + [self.coord]:
                if p is not None:
                    print("--- %s (last lines of %s) ---\n%s" % (p.name, p.log, tail(p.log, 15)),
                          file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


CL = None


def setUpModule():
    global CL
    CL = Cluster()
    try:
        CL.start()
    except BaseException:  # tearDownModule does not run then
        CL.failed = True
        CL.stop()
        raise


def tearDownModule():
    CL.stop()


def take(consumer, n, idle_s):
    """Up to n messages of consumer (fewer if it is idle for idle_s)."""
    out = []
    for m in consumer.messages(idle_s=idle_s):
        out.append(m)
        if len(out) == n:
            break
    return out


class Traffic:
    """A producer (messages "m-1".."m-<total>", batches of 5) and two
    consumers from the start (long polls, pushed stream) of one channel,
    each in a thread. With pause_at, the producer waits for resume() once
    that many messages are acknowledged."""

    def __init__(self, client, channel, total, pause_at=None, **consumer_kw):
        self.client, self.channel, self.total = client, channel, total
        self.consumer_kw = consumer_kw
        self.producer = client.producer(channel)
        self.acked = 0
        self.error = None
        self.pause_at = pause_at
        self._resume = threading.Event()
        self.got = {False: [], True: []}  # stream: messages so far
        self.results = {}  # stream: (messages, consumer, error)
        self.threads = [threading.Thread(target=self._produce)] + \
            [threading.Thread(target=self._consume, args=(s,)) for s in (False, True)]
        for t in self.threads:
            t.start()

    def _produce(self):
        try:
            for s in range(1, self.total + 1, 5):
                ids = self.producer.send(["m-%d" % i for i in range(s, s + 5)])
                assert len(ids) == 5 and None not in ids, ids
                self.acked = s + 4
                if self.acked == self.pause_at and not self._resume.wait(30):
                    raise RuntimeError("not resumed")
                time.sleep(0.003)  # spread it so that the event lands in the middle
        except BaseException as e:  # noqa: B902 - reported by check()
            self.error = e

    def _consume(self, stream):
        cons = self.client.consumer(self.channel, start="all", stream=stream, **self.consumer_kw)
        got = self.got[stream]
        try:
            for m in cons.messages(idle_s=20.0):
                got.append(m)
                if len(got) == self.total:
                    break
            self.results[stream] = (got, cons, None)
        except BaseException as e:  # noqa: B902 - reported by check()
            self.results[stream] = (got, cons, e)

    def resume(self):
        self._resume.set()

    def wait_consumed(self, n, timeout_s=20.0):
        """Waits until both consumers have n messages; True if they do."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if all(len(g) >= n for g in self.got.values()):
                return True
            time.sleep(0.005)
        return False

    def wait_acked(self, n, timeout_s=20.0):
        """Waits until n messages are acknowledged; how many are."""
        end = time.monotonic() + timeout_s
        while self.acked < n and self.error is None and time.monotonic() < end:
            time.sleep(0.002)
        return self.acked

    def check(self, test, acked_at_event):
        """Joins the threads and checks that every message was acknowledged
        and consumed by both consumers once, in order; and that the
        channel holds each once."""
        self.resume()
        for t in self.threads:
            t.join(45)
        test.assertFalse(any(t.is_alive() for t in self.threads), "a client thread is stuck")
        test.assertIsNone(self.error, "producer: %r" % (self.error,))
        test.assertLess(acked_at_event, self.total, "the producer ended before the event")
        test.assertEqual(self.acked, self.total)
        want = ["m-%d" % i for i in range(1, self.total + 1)]
        for stream in (False, True):
            got, cons, err = self.results[stream]
            test.assertIsNone(err, "consumer (stream=%s): %r" % (stream, err))
            test.assertEqual([m.text for m in got], want, "consumer (stream=%s)" % stream)
            test.assertEqual([m.seq for m in got], list(range(self.total)))
            keys = [ws.parse_id(m.id) for m in got]
            test.assertEqual(keys, sorted(set(keys)))
        time.sleep(0.5)  # late requests of a node that was stopped are done
        whole = take(self.client.consumer(self.channel, max_batch=1000), self.total + 1,
                     idle_s=1.0)
        test.assertEqual([m.text for m in whole], want, "the channel")

    def consumers(self):
        return self.results[False][1], self.results[True][1]


def wait_served(client, name):
    """The owner's address once it serves the channel (it answers a
    consume; the record names it a moment before it has opened it)."""
    client.consumer(name).poll(wait_ms=0)  # retries 503 "being opened"
    return client.owner(name)[0]


def wait_assigned(client, names, timeout_s=20.0):
    """{name: (addr, term)} once every channel has an owner."""
    return {n: client.owner(n, timeout_s=timeout_s) for n in names}


class StreamTest(unittest.TestCase):
    def setUp(self):
        self.client = ws.Client(CL.addrs(), timeout_s=20.0)

    def run(self, result=None):
        result = super().run(result)
        if result is not None and not result.wasSuccessful():
            CL.failed = True
        return result

    def test_1_channels(self):
        c = self.client
        names = ["a%d" % i for i in range(6)]
        for n in names:
            rec = c.create_channel(n)
            self.assertEqual(rec["name"], n)
            self.assertEqual(rec["log"], "channel/" + n)
        owners = wait_assigned(c, names)
        per = {}
        for addr, term in owners.values():
            self.assertIn(addr, CL.addrs())
            self.assertGreaterEqual(term, 1)
            per[addr] = per.get(addr, 0) + 1
        print("\n  6 channels over the nodes: %s" % sorted(per.values()), file=sys.stderr)
        self.assertEqual(sorted(per.values()), [2, 2, 2])
        listed = {r["name"] for r in c.list_channels()}
        self.assertTrue(set(names) <= listed)
        with self.assertRaises(ws.ConflictError) as cm:
            c.create_channel("a0")
        self.assertEqual(cm.exception.status, 409)
        self.assertEqual(cm.exception.error, "WP_EEXIST")
        c.delete_channel("a5")
        with self.assertRaises(ws.NotFoundError):
            c.get_channel("a5")
        self.assertNotIn("a5", {r["name"] for r in c.list_channels()})
        # Any node answers admin requests, also one that is not the owner.
        for addr in CL.addrs():
            self.assertEqual(c.request("GET", "/v1/channels/a0", addr=addr)["name"], "a0")

    def test_2_produce_consume(self):
        c = self.client
        c.create_channel("rt")
        p = c.producer("rt")
        sent = ["hello", b"\x00\x01\xfe\xff", ("with props", {"k": "v", "x": "y"}),
                {"payload": "caf\u00e9", "props": {"lang": "fr"}}, "nul\x00inside", ""]
        ids = p.send(sent)
        self.assertEqual(len(ids), len(sent))
        ids.append(p.send_one("last"))
        ids += p.send(["tail"])
        want = [b"hello", b"\x00\x01\xfe\xff", b"with props", "caf\u00e9".encode(),
                b"nul\x00inside", b"", b"last", b"tail"]
        for stream in (False, True):
            got = take(c.consumer("rt", start="all", stream=stream), len(want) + 1, idle_s=0.5)
            self.assertEqual([m.payload for m in got], want, "stream=%s" % stream)
            self.assertEqual(got[2].props, {"k": "v", "x": "y"})
            self.assertEqual(got[3].text, "caf\u00e9")
            self.assertEqual(got[0].producer, p.producer_id)
            self.assertEqual([m.seq for m in got], list(range(8)))
            self.assertEqual([m.id for m in got], ids)
        # Resume after an id; "latest" sees only what comes after it.
        rest = take(c.consumer("rt", start="after", start_id=ids[4]), 4, idle_s=0.5)
        self.assertEqual([m.payload for m in rest], want[5:])
        for stream in (False, True):
            cons = c.consumer("rt", start="latest", stream=stream)
            self.assertEqual(cons.poll(wait_ms=0), [])  # the first answer pins "latest"
            p.send(["after-latest-%d" % stream])
            self.assertEqual([m.text for m in take(cons, 1, idle_s=5.0)],
                             ["after-latest-%d" % stream])
        # close() from another thread ends a pushed stream at once.
        cons = c.consumer("rt", start="latest", stream=True)
        t0 = time.monotonic()
        threading.Timer(0.3, cons.close).start()
        self.assertEqual(list(cons), [])
        self.assertLess(time.monotonic() - t0, 3.0)

    def test_3_idempotent_retry(self):
        """The same producer id and seqs sent again write nothing twice:
        the answer is the first ids, marked dup."""
        c = self.client
        c.create_channel("idem")
        p1 = c.producer("idem", producer_id="fixed", first_seq=10)
        ids = p1.send(["x", "y", "z"])
        p2 = c.producer("idem", producer_id="fixed", first_seq=10)  # a "restart"
        self.assertEqual(p2.send(["x", "y", "z"]), ids)
        self.assertEqual(p2.last_dup, [True, True, True])
        ids += p2.send(["w"])
        self.assertEqual(p2.last_dup, [False])
        got = list(c.consumer("idem").messages(idle_s=1.0))
        self.assertEqual([m.text for m in got], ["x", "y", "z", "w"])
        self.assertEqual([m.id for m in got], ids)
        self.assertEqual([m.seq for m in got], [10, 11, 12, 13])

    def test_4_bad_requests(self):
        c = self.client
        c.create_channel("bad")
        owner = wait_served(c, "bad")  # raw requests below are not retried
        path = "/v1/channels/bad/messages"
        # Malformed JSON: the node's 400 comes back as a BadRequestError.
        with self.assertRaises(ws.BadRequestError) as cm:
            c.request("POST", path, b"{not json", addr=owner)
        e = cm.exception
        self.assertEqual((e.status, e.error), (400, "WP_EINVAL"))
        self.assertIn("400 WP_EINVAL", str(e))
        print("\n  malformed JSON: %s" % e, file=sys.stderr)
        # A reserved property: refused at once (not retried), the next send works.
        p = c.producer("bad")
        t0 = time.monotonic()
        with self.assertRaises(ws.BadRequestError) as cm:
            p.send([("x", {"wp.mine": "1"})])
        self.assertLess(time.monotonic() - t0, 2.0)
        self.assertIn("reserved", cm.exception.message)
        self.assertEqual(p.retries, 0)
        self.assertIsNone(p.pending)
        self.assertEqual(len(p.send(["fine"])), 1)
        # A message above writer.max_entry_bytes (64 KiB here): 413, and the
        # batch stays pending (the messages before it may be written).
        with self.assertRaises(ws.TooBigError) as cm:
            p.send(["y" * (80 << 10)])
        self.assertEqual(cm.exception.status, 413)
        self.assertIsNotNone(p.pending)
        with self.assertRaises(ws.WoodpeckerError):
            p.send(["refused while a batch is pending"])
        p.discard()
        self.assertEqual(len(p.send(["fine again"])), 1)
        with self.assertRaises(ws.BadRequestError):
            c.create_channel("bad name")
        with self.assertRaises(ws.NotFoundError):
            c.producer("nope").send(["x"])
        with self.assertRaises(ws.NotFoundError):
            c.consumer("nope").poll(wait_ms=0)
        with self.assertRaises(ws.BadRequestError):
            c.request("GET", path + "?from=sideways", addr=owner)
        with self.assertRaises(ValueError):
            c.consumer("bad", start="sideways")
        with self.assertRaises(ValueError):
            c.consumer("bad", start="after")  # no start_id
        # The node still serves.
        self.assertEqual([m.text for m in take(c.consumer("bad"), 3, idle_s=0.5)],
                         ["fine", "fine again"])

    def test_5_owner_killed_during_produce(self):
        """The owner of a channel is killed -9 while a producer and two
        consumers (long poll, pushed stream) use it: every acknowledged
        message is consumed exactly once and in order, by both, and the
        channel holds each message once."""
        c = self.client
        c.create_channel("k")
        addr0, term0 = c.owner("k")
        tr = Traffic(c, "k", 600)
        acked = tr.wait_acked(200)
        victim = CL.node_by_addr(addr0)
        self.assertEqual(victim.kill(signal.SIGKILL), -signal.SIGKILL)
        t_kill = time.monotonic()
        tr.check(self, acked)
        t_done = time.monotonic() - t_kill
        addr1, term1 = c.owner("k")
        self.assertNotEqual(addr1, addr0)
        self.assertGreater(term1, term0)
        self.assertGreater(tr.producer.retries, 0)
        poll, push = tr.consumers()
        self.assertGreater(poll.reconnects, 0)
        self.assertGreater(push.reconnects, 0)
        print("\n  killed %s at %d acked; owner %s -> %s, term %d -> %d; producer retries %d; "
              "consumer reconnects: poll %d, stream %d; done %.1f s after the kill"
              % (victim.name, acked, addr0, addr1, term0, term1, tr.producer.retries,
                 poll.reconnects, push.reconnects, t_done), file=sys.stderr)

    def test_6_channel_moves(self):
        """A channel moves while its old owner lives on (the coordinator
        rebalances): the old owner's pushed stream ends with
        {"end":"moved"} and its requests get 421; the producer and both
        consumers follow, nothing is lost or repeated."""
        c = self.client
        for r in c.list_channels():  # a clean slate: only this test's channels
            c.delete_channel(r["name"])
        c.create_channel("zz")  # the last by name: the first a rebalance moves
        addr0, term0 = c.owner("zz")
        fillers = ["f%d" % i for i in range(6)]
        for f in fillers:
            c.create_channel(f)
        owners = wait_assigned(c, fillers)
        self.assertTrue(any(a == addr0 for a, _ in owners.values()))
        # The producer stops at 100 until the old owner has let the channel
        # go, and both consumers are reading from it then: each has to
        # follow the move (before the old owner lets go, it still serves
        # reads of the log, which is the same durable log).
        tr = Traffic(c, "zz", 300, pause_at=100)
        acked = tr.wait_acked(100)
        self.assertTrue(tr.wait_consumed(1), "the consumers got nothing")
        for f, (a, _) in owners.items():  # the owner of zz is now the most loaded
            if a != addr0:
                c.delete_channel(f)
        end = time.monotonic() + 20
        while time.monotonic() < end:
            try:
                c.request("GET", "/v1/channels/zz/messages?wait_ms=0", addr=addr0)
            except ws.NotOwnerError:
                break  # let go
            except ws.ServiceUnavailableError:
                pass
            time.sleep(0.05)
        else:
            self.fail("%s did not let zz go" % addr0)
        tr.resume()
        tr.check(self, acked)
        addr1, term1 = c.owner("zz")
        self.assertNotEqual(addr1, addr0)
        self.assertGreater(term1, term0)
        self.assertTrue(CL.node_by_addr(addr0).alive())
        poll, push = tr.consumers()
        self.assertGreater(poll.moves, 0, "the long poll consumer never followed a move")
        self.assertGreater(push.moves, 0, "the stream consumer never followed a move")
        print("\n  zz moved %s -> %s at %d acked, term %d -> %d; producer retries %d; "
              "consumer moves followed: poll %d, stream %d"
              % (addr0, addr1, acked, term0, term1, tr.producer.retries, poll.moves,
                 push.moves), file=sys.stderr)

    def test_7_owner_frozen(self):
        """The owner is frozen (SIGSTOP) past its lease while a producer
        and two consumers use the channel: their requests to it hang until
        the client's timeouts, the channel moves, they go on at the new
        owner; then the frozen node runs again with the produce request it
        had taken still in hand: that late copy must write nothing (its
        writer was fenced, or it has let the channel go). Every message
        once, in order."""
        c = ws.Client(CL.addrs(), timeout_s=30.0, request_timeout_s=2.0)
        c.create_channel("fz")
        addr0, term0 = c.owner("fz")
        victim = CL.node_by_addr(addr0)
        tr = Traffic(c, "fz", 300, wait_ms=500, stream_dead_s=2.0)
        acked = tr.wait_acked(100)
        victim.p.send_signal(signal.SIGSTOP)
        try:
            end = time.monotonic() + 20
            addr1, term1 = addr0, term0
            while time.monotonic() < end and term1 == term0:
                time.sleep(0.1)
                addr1, term1 = c.owner("fz")
        finally:
            victim.p.send_signal(signal.SIGCONT)
        tr.check(self, acked)
        self.assertGreater(term1, term0)
        self.assertNotEqual(addr1, addr0)
        poll, push = tr.consumers()
        print("\n  froze %s at %d acked; owner -> %s, term %d -> %d; producer retries %d; "
              "consumer reconnects: poll %d, stream %d"
              % (victim.name, acked, addr1, term0, term1, tr.producer.retries,
                 poll.reconnects, push.reconnects), file=sys.stderr)

if __name__ == "__main__":
    unittest.main(verbosity=2)
