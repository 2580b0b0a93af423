"""SPDY/3.1 framing, as the Go framer of ``github.com/moby/spdystream/spdy`` (a fork of
``golang.org/x/net/spdy``) reads and writes it: the framer ``kubectl port-forward`` speaks, in
WebSocket binary messages (the tunnel) or on the upgraded connection itself.

Frames (``spdy/types.go``): a control frame is ``1 | version(15) | type(16) | flags(8) |
length(24) | data``; a data frame is ``0 | stream id(31) | flags(8) | length(24) | data``.
Header blocks (SYN_STREAM, SYN_REPLY, HEADERS) are ``count(32)`` then ``len(32) name len(32)
value`` pairs, multiple values joined by NUL, compressed with zlib against the SPDY/3 dictionary:
one zlib stream per direction for the whole connection, sync-flushed after every block
(``spdy/write.go: writeSynStreamFrame`` ... ``headerCompressor.Flush()``; ``spdy/read.go``).

The reader is stricter than nothing and exactly as strict as ``spdy/read.go``: unknown frame
types, a zero stream id, upper-case or duplicate header names, a compressed block of the wrong
size, RST_STREAM with status 0, PING with id 0 or flags, GOAWAY/WINDOW_UPDATE with flags or a
length other than 8 are errors that end the connection (``spdystream.Connection.Serve`` stops
reading at the first error).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

VERSION = 3

# spdy/types.go: ControlFrameType
SYN_STREAM = 0x0001
SYN_REPLY = 0x0002
RST_STREAM = 0x0003
SETTINGS = 0x0004
PING = 0x0006
GOAWAY = 0x0007
HEADERS = 0x0008
WINDOW_UPDATE = 0x0009

FLAG_FIN = 0x01  # ControlFlagFin / DataFlagFin
FLAG_UNIDIRECTIONAL = 0x02  # ControlFlagUnidirectional

# spdy/types.go: RstStreamStatus
PROTOCOL_ERROR = 1
INVALID_STREAM = 2
REFUSED_STREAM = 3
UNSUPPORTED_VERSION = 4
CANCEL = 5
INTERNAL_ERROR = 6
FLOW_CONTROL_ERROR = 7

MAX_DATA_LENGTH = (1 << 24) - 1  # spdy/types.go: MaxDataLength

# spdy/types.go: invalidReqHeaders / invalidRespHeaders (canonical names, compared after
# http.Header canonicalisation).
INVALID_REQ_HEADERS = frozenset({"Connection", "Host", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding"})
INVALID_RESP_HEADERS = frozenset({"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding"})

# The SPDY/3 header compression dictionary (draft-mbelshe-httpbis-spdy-00 section 2.6.10.1;
# spdy/dictionary.go: headerDictionary): 65 length-prefixed words, then a run of text.
_DICT_WORDS = (
    "options head post put delete trace accept accept-charset accept-encoding accept-language "
    "accept-ranges age allow authorization cache-control connection content-base content-encoding "
    "content-language content-length content-location content-md5 content-range content-type date "
    "etag expect expires from host if-match if-modified-since if-none-match if-range "
    "if-unmodified-since last-modified location max-forwards pragma proxy-authenticate "
    "proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade "
    "user-agent vary via warning www-authenticate method get status|200 OK|version HTTP/1.1 url "
    "public set-cookie keep-alive origin"
)
_DICT_TAIL = (
    "1001012012022052063003023033043053063074024054064074084094104114124134144154164175025045"
    "05203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401"
    " Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 S"
    "ervice UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, We"
    "d, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,application/xm"
    "l,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdc"
    "hcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)


def _dictionary() -> bytes:
    words: list[str] = []
    for part in _DICT_WORDS.split("|"):
        # "200 OK" is one word; the other words are separated by spaces.
        words.extend([part] if part == "200 OK" else part.split())
    out = b"".join(struct.pack(">I", len(w)) + w.encode() for w in words)
    return out + _DICT_TAIL.encode()


DICTIONARY = _dictionary()
# The dictionary's Adler-32 is the DICTID every SPDY/3 header stream announces (0xe3c6a7c2).
assert len(DICTIONARY) == 1423 and zlib.adler32(DICTIONARY) == 0xE3C6A7C2, "SPDY/3 dictionary"


class SpdyError(Exception):
    """``spdy.Error``: the ``ErrorCode`` text and the stream it concerns (0 if none)."""

    def __init__(self, code: str, stream_id: int = 0) -> None:
        super().__init__(code)
        self.code = code
        self.stream_id = stream_id


# spdy/types.go: ErrorCode
UNLOWERCASED_HEADER_NAME = "header was not lowercased"
DUPLICATE_HEADERS = "multiple headers with same name"
WRONG_COMPRESSED_PAYLOAD_SIZE = "compressed payload size was incorrect"
UNKNOWN_FRAME_TYPE = "unknown frame type"
INVALID_CONTROL_FRAME = "invalid control frame"
INVALID_DATA_FRAME = "invalid data frame"
INVALID_HEADER_PRESENT = "frame contained invalid header"
ZERO_STREAM_ID = "stream id zero is disallowed"


Headers = dict[str, list[str]]


def canonical_header_key(name: str) -> str:
    """``textproto.CanonicalMIMEHeaderKey`` for the token names SPDY carries."""
    if not name or any(not (c.isascii() and (c.isalnum() or c in "!#$%&'*+-.^_`|~")) for c in name):
        return name
    return "-".join(p[:1].upper() + p[1:].lower() for p in name.split("-"))


def get_header(headers: Headers, name: str) -> str:
    """``http.Header.Get``: the first value, or ""."""
    values = headers.get(canonical_header_key(name)) or []
    return values[0] if values else ""


@dataclass
class DataFrame:
    stream_id: int
    data: bytes = b""
    flags: int = 0


@dataclass
class SynStreamFrame:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    flags: int = 0
    associated_to: int = 0
    priority: int = 0
    slot: int = 0


@dataclass
class SynReplyFrame:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    flags: int = 0


@dataclass
class HeadersFrame:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    flags: int = 0


@dataclass
class RstStreamFrame:
    stream_id: int
    status: int


@dataclass
class SettingsFrame:
    entries: list[tuple[int, int, int]] = field(default_factory=list)  # (flag, id, value)
    flags: int = 0


@dataclass
class PingFrame:
    id: int


@dataclass
class GoAwayFrame:
    last_good_stream_id: int
    status: int = 0


@dataclass
class WindowUpdateFrame:
    stream_id: int
    delta: int


Frame = (
    DataFrame
    | SynStreamFrame
    | SynReplyFrame
    | HeadersFrame
    | RstStreamFrame
    | SettingsFrame
    | PingFrame
    | GoAwayFrame
    | WindowUpdateFrame
)


def encode_header_block(headers: Headers) -> bytes:
    """``spdy/write.go: writeHeaderValueBlock`` (uncompressed): names lower-cased, values joined
    with NUL."""
    out = [struct.pack(">I", len(headers))]
    for name, values in headers.items():
        n = name.lower().encode()
        v = "\x00".join(values).encode()
        out.append(struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v)
    return b"".join(out)


def decode_header_block(raw: bytes, stream_id: int) -> Headers:
    """``spdy/read.go: parseHeaderValueBlock``; the whole (decompressed) block must be used."""
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(raw):
            raise SpdyError(WRONG_COMPRESSED_PAYLOAD_SIZE, stream_id)
        chunk = raw[pos : pos + n]
        pos += n
        return chunk

    (count,) = struct.unpack(">I", take(4))
    headers: Headers = {}
    for _ in range(count):
        (n,) = struct.unpack(">I", take(4))
        name = take(n).decode("latin-1")
        if name.lower() != name:
            raise SpdyError(UNLOWERCASED_HEADER_NAME, stream_id)
        key = canonical_header_key(name)
        if key in headers:
            raise SpdyError(DUPLICATE_HEADERS, stream_id)
        (n,) = struct.unpack(">I", take(4))
        value = take(n).decode("latin-1")
        headers[key] = value.split("\x00")
    if pos != len(raw):
        raise SpdyError(WRONG_COMPRESSED_PAYLOAD_SIZE, stream_id)
    return headers


class Framer:
    """One side of a SPDY/3.1 connection: ``encode`` frames to send, ``feed`` received bytes and
    iterate the complete frames. The two zlib streams (ours and the peer's) live as long as the
    connection (``spdy/types.go: NewFramer``)."""

    def __init__(self) -> None:
        # zlib.NewWriterLevelDict(buf, zlib.BestCompression, headerDictionary)
        self._compressor = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)
        self._decompressor = zlib.decompressobj(15, DICTIONARY)
        self._buf = bytearray()

    # -- writing -------------------------------------------------------------------------------
    def _compress(self, headers: Headers) -> bytes:
        block = encode_header_block(headers)
        return self._compressor.compress(block) + self._compressor.flush(zlib.Z_SYNC_FLUSH)

    @staticmethod
    def _control(frame_type: int, flags: int, payload: bytes) -> bytes:
        # spdy/write.go: writeControlFrameHeader
        return struct.pack(">HHI", 0x8000 | VERSION, frame_type, (flags << 24) | len(payload)) + payload

    def encode(self, frame: Frame) -> bytes:
        """``Framer.WriteFrame`` as one byte string."""
        if isinstance(frame, DataFrame):
            if frame.stream_id == 0:
                raise SpdyError(ZERO_STREAM_ID)
            if frame.stream_id & 0x80000000 or len(frame.data) > MAX_DATA_LENGTH:
                raise SpdyError(INVALID_DATA_FRAME, frame.stream_id)
            return struct.pack(">II", frame.stream_id, (frame.flags << 24) | len(frame.data)) + frame.data
        if isinstance(frame, SynStreamFrame):
            if frame.stream_id == 0:
                raise SpdyError(ZERO_STREAM_ID)
            body = struct.pack(
                ">IIBB", frame.stream_id, frame.associated_to, (frame.priority << 5) & 0xFF, frame.slot
            )
            return self._control(SYN_STREAM, frame.flags, body + self._compress(frame.headers))
        if isinstance(frame, SynReplyFrame | HeadersFrame):
            if frame.stream_id == 0:
                raise SpdyError(ZERO_STREAM_ID)
            kind = SYN_REPLY if isinstance(frame, SynReplyFrame) else HEADERS
            body = struct.pack(">I", frame.stream_id) + self._compress(frame.headers)
            return self._control(kind, frame.flags, body)
        if isinstance(frame, RstStreamFrame):
            if frame.stream_id == 0:
                raise SpdyError(ZERO_STREAM_ID)
            if frame.status == 0:
                raise SpdyError(INVALID_CONTROL_FRAME, frame.stream_id)
            return self._control(RST_STREAM, 0, struct.pack(">II", frame.stream_id, frame.status))
        if isinstance(frame, SettingsFrame):
            body = struct.pack(">I", len(frame.entries)) + b"".join(
                struct.pack(">II", (flag << 24) | sid, value) for flag, sid, value in frame.entries
            )
            return self._control(SETTINGS, frame.flags, body)
        if isinstance(frame, PingFrame):
            if frame.id == 0:
                raise SpdyError(ZERO_STREAM_ID)
            return self._control(PING, 0, struct.pack(">I", frame.id))
        if isinstance(frame, GoAwayFrame):
            return self._control(GOAWAY, 0, struct.pack(">II", frame.last_good_stream_id, frame.status))
        if isinstance(frame, WindowUpdateFrame):
            return self._control(WINDOW_UPDATE, 0, struct.pack(">II", frame.stream_id, frame.delta))
        raise TypeError(f"not a SPDY frame: {frame!r}")

    # -- reading -------------------------------------------------------------------------------
    def feed(self, data: bytes) -> Iterator[Frame]:
        """Buffer ``data`` and yield every complete frame (``Framer.ReadFrame``)."""
        self._buf += data
        while len(self._buf) >= 8:
            first, second = struct.unpack_from(">II", self._buf)
            length = second & 0xFFFFFF
            if len(self._buf) < 8 + length:
                return
            payload = bytes(self._buf[8 : 8 + length])
            del self._buf[: 8 + length]
            flags = second >> 24
            if first & 0x80000000:
                yield self._parse_control(first & 0xFFFF, flags, payload)
            else:
                stream_id = first & 0x7FFFFFFF
                if stream_id == 0:
                    raise SpdyError(ZERO_STREAM_ID)  # spdy/read.go: parseDataFrame
                yield DataFrame(stream_id, payload, flags)

    def _headers(self, compressed: bytes, stream_id: int) -> Headers:
        try:
            raw = self._decompressor.decompress(compressed)
        except zlib.error:
            raise SpdyError(WRONG_COMPRESSED_PAYLOAD_SIZE, stream_id) from None
        if self._decompressor.unconsumed_tail or self._decompressor.eof:
            raise SpdyError(WRONG_COMPRESSED_PAYLOAD_SIZE, stream_id)
        return decode_header_block(raw, stream_id)

    def _parse_control(self, frame_type: int, flags: int, p: bytes) -> Frame:
        """``spdy/read.go: parseControlFrame`` and each frame's ``read``."""

        def need(n: int) -> None:
            if len(p) < n:
                raise SpdyError(INVALID_CONTROL_FRAME)

        if frame_type == SYN_STREAM:
            need(10)
            sid, assoc, prio, slot = struct.unpack_from(">IIBB", p)
            sid &= 0x7FFFFFFF
            if sid == 0:
                raise SpdyError(ZERO_STREAM_ID)
            headers = self._headers(p[10:], sid)
            if any(h in INVALID_REQ_HEADERS for h in headers):
                raise SpdyError(INVALID_HEADER_PRESENT, sid)
            return SynStreamFrame(sid, headers, flags, assoc & 0x7FFFFFFF, prio >> 5, slot)
        if frame_type in (SYN_REPLY, HEADERS):
            need(4)
            (sid,) = struct.unpack_from(">I", p)
            sid &= 0x7FFFFFFF
            if sid == 0:
                raise SpdyError(ZERO_STREAM_ID)
            headers = self._headers(p[4:], sid)
            if frame_type == SYN_REPLY:
                if any(h in INVALID_RESP_HEADERS for h in headers):
                    raise SpdyError(INVALID_HEADER_PRESENT, sid)
                return SynReplyFrame(sid, headers, flags)
            return HeadersFrame(sid, headers, flags)
        if frame_type == RST_STREAM:
            need(8)
            sid, status = struct.unpack_from(">II", p)
            sid &= 0x7FFFFFFF
            if sid == 0:
                raise SpdyError(ZERO_STREAM_ID)
            if status == 0:
                raise SpdyError(INVALID_CONTROL_FRAME, sid)
            return RstStreamFrame(sid, status)
        if frame_type == SETTINGS:
            need(4)
            (n,) = struct.unpack_from(">I", p)
            need(4 + 8 * n)
            entries = []
            for i in range(n):
                flag_id, value = struct.unpack_from(">II", p, 4 + 8 * i)
                entries.append((flag_id >> 24, flag_id & 0xFFFFFF, value))
            return SettingsFrame(entries, flags)
        if frame_type == PING:
            need(4)
            (pid,) = struct.unpack_from(">I", p)
            if pid == 0:
                raise SpdyError(ZERO_STREAM_ID)
            if flags != 0:
                raise SpdyError(INVALID_CONTROL_FRAME)
            return PingFrame(pid)
        if frame_type == GOAWAY:
            if flags != 0 or len(p) != 8:
                raise SpdyError(INVALID_CONTROL_FRAME)
            last, status = struct.unpack(">II", p)
            return GoAwayFrame(last & 0x7FFFFFFF, status)
        if frame_type == WINDOW_UPDATE:
            if flags != 0 or len(p) != 8:
                raise SpdyError(INVALID_CONTROL_FRAME)
            sid, delta = struct.unpack(">II", p)
            return WindowUpdateFrame(sid & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        raise SpdyError(UNKNOWN_FRAME_TYPE)


__all__ = [
    "DICTIONARY",
    "DataFrame",
    "Frame",
    "Framer",
    "GoAwayFrame",
    "Headers",
    "HeadersFrame",
    "PingFrame",
    "RstStreamFrame",
    "SettingsFrame",
    "SpdyError",
    "SynReplyFrame",
    "SynStreamFrame",
    "WindowUpdateFrame",
    "canonical_header_key",
    "decode_header_block",
    "encode_header_block",
    "get_header",
]
