"""A minimal WebSocket client (RFC 6455) over the standard library's
socket and ssl modules, for the integration tests: the opening handshake,
masked client frames, server frames read back whole."""

import base64
import hashlib
import os
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG = 1, 2, 8, 9, 10


class Handshake:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def header(self, name):
        return self.headers.get(name.lower())


class WebSocket:
    def __init__(self, sock):
        self.s = sock
        self.buf = b""

    @staticmethod
    def open(sock, path, host, origin=None, extra=None, key=None, version="13"):
        """Send the upgrade request; returns (WebSocket or None, Handshake)."""
        key = key or base64.b64encode(os.urandom(16)).decode()
        lines = ["GET %s HTTP/1.1" % path, "Host: %s" % host, "Upgrade: websocket",
                 "Connection: Upgrade", "Sec-WebSocket-Key: %s" % key]
        if version is not None:
            lines.append("Sec-WebSocket-Version: %s" % version)
        if origin:
            lines.append("Origin: %s" % origin)
        lines += extra or []
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        ws = WebSocket(sock)
        while b"\r\n\r\n" not in ws.buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed during the handshake: %r" % ws.buf)
            ws.buf += chunk
        head, ws.buf = ws.buf.split(b"\r\n\r\n", 1)
        rows = head.decode("latin-1").split("\r\n")
        status = int(rows[0].split()[1])
        headers = {}
        for r in rows[1:]:
            k, _, v = r.partition(":")
            headers[k.strip().lower()] = v.strip()
        if status != 101:
            n = int(headers.get("content-length", "0"))
            while len(ws.buf) < n:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                ws.buf += chunk
            return None, Handshake(status, headers, ws.buf[:n])
        want = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        assert headers.get("sec-websocket-accept") == want, headers
        return ws, Handshake(status, headers, b"")

    def send(self, opcode, payload, fin=True, mask=True):
        if isinstance(payload, str):
            payload = payload.encode()
        n = len(payload)
        hdr = bytes([(0x80 if fin else 0) | opcode])
        mbit = 0x80 if mask else 0
        if n < 126:
            hdr += bytes([mbit | n])
        elif n < 65536:
            hdr += bytes([mbit | 126]) + struct.pack("!H", n)
        else:
            hdr += bytes([mbit | 127]) + struct.pack("!Q", n)
        if mask:
            k = os.urandom(4)
            hdr += k
            payload = bytes(b ^ k[i % 4] for i, b in enumerate(payload))
        self.s.sendall(hdr + payload)

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk

    def recv(self):
        """(opcode, payload) of the next frame from the server."""
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        assert not b1 & 0x80, "a server frame must not be masked"
        n, off = b1 & 0x7F, 2
        if n == 126:
            self._need(4)
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
        self._need(off + n)
        payload = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        return b0 & 0x0F, payload

    def close_code(self, frame):
        op, payload = frame
        assert op == CLOSE, frame
        return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
