"""Testing dataset code without the network, for graphnet's tests and dataset-plugin authors:
small files in the real formats, and a local HTTP server that honours Range requests and can
drop a connection part-way on purpose::

    from graphnet.data.testing import FileServer, idx_bytes

    with FileServer({"/mnist/labels.gz": gzip.compress(idx_bytes(labels))}) as server:
        download(server.url + "/mnist/labels.gz", target, sha256=...)
"""
from __future__ import annotations

import io
import socket
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes (MNIST's format) holding ``array``."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(dim).to_bytes(4, "big") for dim in array.shape)
    return header + array.tobytes()


def cifar_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    """A CIFAR-10 binary batch: per image one label byte, then its 3×32×32 pixel bytes."""
    images = np.asarray(images, dtype=np.uint8).reshape(len(images), -1)
    return np.concatenate([np.asarray(labels, np.uint8)[:, None], images], axis=1).tobytes()


def tar_bytes(files: dict[str, bytes], mode: str = "w:gz") -> bytes:
    """A tar archive (gzipped by default) of regular files, by member name."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in files.items():
            member = tarfile.TarInfo(name)
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


class FileServer:
    """Serve ``files`` (URL path → bytes) on 127.0.0.1 at a free port, from a thread.

    ``cut_after[path] = n``: the first GET of ``path`` announces the full length but sends
    only ``n`` bytes, then closes the connection. ``trickle[path] = seconds``: send one byte
    per ``seconds`` for as long as the client listens (a server that never finishes, though
    every read gets data). ``honour_range=False`` answers every request with the whole file.
    ``requests`` records ``(path, Range header or None)`` per GET.
    """

    def __init__(self, files: dict[str, bytes], *, cut_after: dict[str, int] | None = None,
                 honour_range: bool = True, trickle: dict[str, float] | None = None):
        self.files = dict(files)
        self.cut_after = dict(cut_after or {})
        self.trickle = dict(trickle or {})
        self._stopping = threading.Event()
        self.honour_range = honour_range
        self.requests: list[tuple[str, str | None]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "FileServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _handler_class(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                range_header = self.headers.get("Range")
                owner.requests.append((self.path, range_header))
                data = owner.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = _range_start(range_header) if owner.honour_range else None
                if start is not None and start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if start is not None:
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                    body = data[start:]
                else:
                    self.send_response(200)
                    body = data
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                pause = owner.trickle.get(self.path)
                if pause is not None:
                    for position in range(len(body)):
                        if owner._stopping.wait(pause):
                            break
                        try:
                            self.wfile.write(body[position:position + 1])
                            self.wfile.flush()
                        except OSError:  # the client gave up
                            break
                    self.close_connection = True
                    return
                cut = owner.cut_after.pop(self.path, None)
                if cut is None:
                    self.wfile.write(body)
                    return
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

            def log_message(self, *args):  # keep test output clean
                pass

        return Handler


def _range_start(header: str | None) -> int | None:
    """START of ``bytes=START-``; None for no header or another form."""
    if not header or not header.startswith("bytes="):
        return None
    first, _, last = header[len("bytes="):].partition("-")
    return int(first) if first.isdigit() and not last else None
