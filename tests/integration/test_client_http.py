"""The CLI's HTTP client (cli/client.c) against a socket that is not a
well-behaved bangerd: answers that are not HTTP, cut short, too large,
too slow or chunked oddly.  Each case must end with one clear error line
(exit 1), never a hang, a crash or a half-printed table; the good cases
show that keep-alive reuse, a redial after the daemon closed the kept
connection, chunked streams and the exec upgrade's refusal all work.

The "daemon" is a Python thread on ROOT/run/bangerd.sock, so nothing but
a Unix socket in tmp_path is involved."""
import json
import os
import socket
import subprocess
import threading

import pytest

from bangertest import BANGER


class FakeDaemon:
    """Serves each connection with handler(conn, request_bytes) -> bool
    (False: close the connection after this answer)."""

    def __init__(self, root, handler):
        self.path = root / "run" / "bangerd.sock"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(str(self.path))
        self.sock.listen(8)
        self.handler = handler
        self.requests = []
        self.connections = 0
        self.stop = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self.one, args=(conn,), daemon=True).start()

    def one(self, conn):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                req, buf = buf.split(b"\r\n\r\n", 1)
                self.requests.append(req.decode())
                if not self.handler(conn, req.decode()):
                    return
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stop = True
        self.sock.close()


def banger(root, *args, timeout=60):
    env = dict(os.environ)
    env.pop("BANGER_ROOT", None)
    return subprocess.run([str(BANGER), "--root", str(root), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def sandbox_body(name="web"):
    return json.dumps({"apiVersion": "banger/v1", "kind": "Sandbox", "metadata": {"name": name},
                       "spec": {}, "status": {"phase": "Running", "conditions": []}}).encode()


def answer(status, body, extra=b"", ctype=b"application/json"):
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype + b"\r\nContent-Length: " +
            str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body)


@pytest.fixture
def fake(tmp_path):
    made = []

    def make(handler):
        d = FakeDaemon(tmp_path / "root", handler)
        made.append(d)
        return d
    yield make
    for d in made:
        d.close()


def one_line_error(r, *parts):
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for p in parts:
        assert p in lines[0], lines[0]
    assert r.stdout == ""


@pytest.mark.parametrize("reply,parts", [
    (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", ["bad HTTP answer from bangerd"]),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"kind\":", ["closed the connection mid-answer"]),
    (b"", ["closed the connection without answering"]),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", ["bad HTTP answer from bangerd"]),
    (b"HTTP/1.1 200 OK\r\nX-Banger-Seq: " + b"9" * 5000 + b"\r\nContent-Length: 2\r\n\r\n[]",
     ["reply is not a JSON object"]),
    (b"HTTP/1.1 200 OK\r\n" + b"X-Junk: " + b"a" * 100000 + b"\r\n\r\n", ["bad HTTP answer from bangerd"]),
])
def test_broken_answers_are_one_clear_error(tmp_path, fake, reply, parts):
    def handler(conn, req):
        conn.sendall(reply)
        return False
    fake(handler)
    one_line_error(banger(tmp_path / "root", "get", "web"), *parts)


def test_a_reply_over_the_size_limit_is_refused_not_buffered(tmp_path, fake):
    def handler(conn, req):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 70000000\r\n\r\n")
        try:
            for _ in range(1100):
                conn.sendall(b" " * 65536)
        except OSError:
            pass   # the client hung up, as it should
        return False
    fake(handler)
    one_line_error(banger(tmp_path / "root", "get"), "reply larger than")


def test_an_api_error_object_is_printed_as_its_message(tmp_path, fake):
    def handler(conn, req):
        conn.sendall(answer(b"400 Bad Request", b'{"kind":"Error","code":400,"message":"nope, and why"}'))
        return True
    fake(handler)
    one_line_error(banger(tmp_path / "root", "get"), "nope, and why")


SPEC = """\
apiVersion: banger/v1
kind: Sandbox
metadata:
  name: web
spec:
  image: tiny
"""


def test_kept_connection_is_reused_and_redialled_after_the_daemon_closed_it(tmp_path, fake):
    """`delete` removes the file, then waits (GET the sandbox, long-poll
    the events, again) until the API says 404.  Answers keep the
    connection, except that every third one closes it afterwards (as the
    daemon's idle timeout does): the client must redial, not fail."""
    state = {"n": 0, "gets": 0}

    def handler(conn, req):
        state["n"] += 1
        path = req.split(" ")[1]
        if path.startswith("/v1/events"):
            assert "wait=" in path and "since=7" in path, path
            conn.sendall(answer(b"200 OK", b"", b"X-Banger-Seq: 7\r\n", b"application/x-ndjson"))
        else:
            state["gets"] += 1
            if state["gets"] > 4:
                conn.sendall(answer(b"404 Not Found", b'{"kind":"Error","code":404,"message":"gone"}',
                                    b"X-Banger-Seq: 8\r\n"))
            else:
                conn.sendall(answer(b"200 OK", sandbox_body(), b"X-Banger-Seq: 7\r\n"))
        return state["n"] % 3 != 0
    d = fake(handler)
    folder = tmp_path / "root" / "config" / "sandboxes"
    folder.mkdir(parents=True)
    (folder / "web.yaml").write_text(SPEC)
    r = banger(tmp_path / "root", "delete", "web")
    assert r.returncode == 0, r.stderr
    assert "sandbox/web deleted" in r.stdout
    assert not (folder / "web.yaml").exists()
    assert state["gets"] == 5
    assert 1 < d.connections < state["n"], (d.connections, state["n"])
    assert all("Host: banger" in q for q in d.requests)


def test_chunked_event_stream_with_lines_split_across_chunks(tmp_path, fake):
    lines = [json.dumps({"seq": i, "time": "2026-12-07T10:00:00.000Z", "name": "web", "type": "PhaseChanged",
                         "phase": "Running", "message": f"m{i}"}) + "\n" for i in range(1, 4)]
    data = "".join(lines).encode()
    pieces = [data[:10], data[10:11], data[11:len(data) - 5], data[len(data) - 5:]]

    def handler(conn, req):
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
        body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
        conn.sendall(head + body)
        return False
    fake(handler)
    r = banger(tmp_path / "root", "events", "-o", "json")
    assert r.returncode == 0, r.stderr
    got = [json.loads(ln)["message"] for ln in r.stdout.splitlines()]
    assert got == ["m1", "m2", "m3"]


def test_a_daemon_that_never_answers_does_not_hang_the_cli_forever(tmp_path, fake):
    def handler(conn, req):
        return True   # read the request, say nothing, keep the connection
    fake(handler)
    p = subprocess.Popen([str(BANGER), "--root", str(tmp_path / "root"), "get"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=45)   # the client's own limit is 30 s
    except subprocess.TimeoutExpired:
        p.kill()
        pytest.fail("banger get waited past its request timeout")
    assert p.returncode == 1
    assert "did not answer within 30 s" in err


def test_exec_refused_by_the_daemon_prints_its_message(tmp_path, fake):
    def handler(conn, req):
        assert req.startswith("POST /v1/sandboxes/web/exec HTTP/1.1\r\n")
        assert "Upgrade: banger-exec/1" in req and "Content-Length: 0" in req
        conn.sendall(answer(b"409 Conflict", b'{"kind":"Error","code":409,"message":"the guest agent of web '
                                             b'is not ready: waiting"}'))
        return False
    fake(handler)
    one_line_error(banger(tmp_path / "root", "vm", "exec", "web", "--", "true"), "guest agent of web is not ready")
