"""A client for the cyclegand daemon's control socket (docs/PROTOCOL.md).

Plain Python 3 (standard library only) so that the GIMP plug-in, scripts and tests share it:

    from cyclegand_client import Client
    with Client() as daemon:
        print(daemon.directions())
        reply, png = daemon.translate_bytes(open("cat.png", "rb").read(), "modern2vintage", name="cat.png")

Errors the daemon reports raise `DaemonError` (with `.code` and `.message`); a daemon that cannot
be reached raises `ConnectionError` with a message that says what to do.
"""

import json
import os
import socket

PROTOCOL_VERSION = 2


def default_socket_path():
    """$CYCLEGAND_SOCKET, else $XDG_RUNTIME_DIR/cyclegand.sock, else the system unit's socket."""
    if os.environ.get("CYCLEGAND_SOCKET"):
        return os.environ["CYCLEGAND_SOCKET"]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "cyclegand.sock")
    return "/run/cyclegand/cyclegand.sock"


class DaemonError(Exception):
    """An error reply: `code` is one of docs/PROTOCOL.md's codes, `message` says what to do."""

    def __init__(self, code, message):
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message


class Client:
    """One connection to the daemon; one request at a time."""

    def __init__(self, socket_path=None, timeout=None):
        self.socket_path = socket_path or default_socket_path()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(self.socket_path)
        except FileNotFoundError:
            self._sock.close()
            raise ConnectionError(
                "no cyclegand daemon at %s; start it (`cyclegand serve` or "
                "`systemctl --user start cyclegand`) or set CYCLEGAND_SOCKET" % self.socket_path)
        except ConnectionRefusedError:
            self._sock.close()
            raise ConnectionError("the cyclegand daemon at %s is not running (stale socket)" % self.socket_path)
        except PermissionError:
            self._sock.close()
            raise ConnectionError(
                "permission denied on %s: the daemon serves its own user, root and its socket_group"
                % self.socket_path)
        self._buffer = b""
        self._next_id = 1

    def close(self):
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the wire ---------------------------------------------------------------------------

    def call(self, cmd, payload=None, on_progress=None, **fields):
        """Sends one request and returns (reply dict, reply payload bytes or None).
        The lines before the reply (a translate's {"id", "job", "progress"} lines) go to
        `on_progress(fraction, job)` when given. Raises DaemonError when the reply has ok == false."""
        request = dict(fields, id=self._next_id, cmd=cmd)
        self._next_id += 1
        if payload is not None:
            request["bytes"] = len(payload)
        data = json.dumps(request, separators=(",", ":")).encode() + b"\n"
        self._sock.sendall(data + (payload or b""))
        reply, body = self.read()
        while "ok" not in reply and "progress" in reply:
            if on_progress:
                on_progress(reply["progress"], reply.get("job"))
            reply, body = self.read()
        if not reply.get("ok"):
            error = reply.get("error") or {}
            raise DaemonError(error.get("code", "internal"), error.get("message", "(no message)"))
        return reply, body

    def read(self):
        """Reads the next line (a reply or an event) and the payload it announces."""
        line = self._read_line()
        try:
            reply = json.loads(line)
        except ValueError:
            raise ConnectionError("the daemon sent a line that is not JSON: %r" % line[:200])
        body = None
        if isinstance(reply.get("bytes"), int):
            body = self._read_exactly(reply["bytes"])
        return reply, body

    def _fill(self):
        chunk = self._sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("the daemon closed the connection")
        self._buffer += chunk

    def _read_line(self):
        while b"\n" not in self._buffer:
            self._fill()
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _read_exactly(self, count):
        while len(self._buffer) < count:
            self._fill()
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    # -- commands ---------------------------------------------------------------------------

    def ping(self):
        return self.call("ping")[0]["pong"]

    def version(self):
        return self.call("version")[0]

    def status(self):
        return self.call("status")[0]["status"]

    def models(self):
        return self.call("models")[0]["models"]

    def directions(self):
        """The direction names the daemon offers, e.g. ["modern2vintage", "vintage2modern"]."""
        return [d["name"] for d in self.directions_info()]

    def directions_info(self):
        """The directions as the daemon describes them: {"name", "model", "from", "to"}."""
        return self.call("directions")[0]["directions"]

    def translate_bytes(self, image, direction, name="image.png", format=None, quality=None, progress=None):
        """Translates an encoded image sent inline; returns (reply, encoded result).
        With `progress`, the daemon reports how far it is: `progress(fraction, job)` is called
        with 0 once the job is queued (its id is what `cancel` takes), then as the work moves,
        and with 1 before the reply."""
        fields = {"direction": direction, "name": name}
        if format:
            fields["format"] = format
        if quality:
            fields["quality"] = quality
        if progress:
            fields["progress"] = True
        return self.call("translate", payload=image, on_progress=progress, **fields)

    def translate_file(self, input, output, direction, **options):
        """Has the daemon read `input` and write `output` (absolute paths it can reach, checked
        against your permissions). Options: format, quality, memory_limit, overwrite."""
        return self.call("translate", input=input, output=output, direction=direction, **options)[0]

    def jobs(self):
        return self.call("jobs")[0]["jobs"]

    def cancel(self, job):
        """Cancels a job: "cancelled" (it left the queue) or "cancel_requested" (it was running)."""
        return self.call("cancel", job=job)[0]["outcome"]

    def reload(self):
        return self.call("reload")[0]

    def shutdown(self):
        return self.call("shutdown")[0]

    def subscribe(self):
        """Subscribes now and returns an iterator of event dicts that ends when the daemon stops.
        The connection then carries only events."""
        self.call("subscribe")

        def events():
            while True:
                try:
                    yield self.read()[0]
                except ConnectionError:
                    return

        return events()
