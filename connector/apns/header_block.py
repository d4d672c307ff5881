"""HPACK for our connections: an encoder that knows which headers repeat, and a
decoder that remembers the strings it has decoded.

Every request of a connection carries the same method, scheme, authority, topic, push
type and authorization, and a path and apns-id that are new each time. A general
HPACK encoder searches its tables for every header and Huffman-codes every value,
which costs more than everything else in sending a request. This one, for the
client side of a connection (RFC 7541 numbers in brackets):

- a header that is in the static table whole (`:method POST`) is one byte [6.1];
- `authorization` is the one header it adds to the dynamic table [6.2.1], so a token
  of some 250 bytes crosses the connection once, and then as one byte per request;
- any other header is a literal without indexing [6.2.2], its name from the static
  table when it is there, its value as raw octets; the bytes for a header seen
  before are kept and reused.

Answers repeat too: the same few header values come back on most of them, and
decoding Huffman-coded strings is the costliest part of reading an answer, so the
decoder keeps what each coded string decoded to.
"""

from __future__ import annotations

from hpack.exceptions import HPACKDecodingError, OversizedHeaderListError
from hpack.huffman_table import decode_huffman
from hpack.table import HeaderTable

# Headers worth a dynamic table entry: the same on every request of a connection,
# and long.
_INDEXED_NAMES = frozenset({b"authorization"})
# The dynamic table's size until the server's SETTINGS say otherwise [RFC 9113 6.5.2].
DEFAULT_TABLE_SIZE = 4096
# An entry's size counts 32 octets beyond its name and value [4.1].
_ENTRY_OVERHEAD = 32
_STATIC_COUNT = len(HeaderTable.STATIC_TABLE)
_STATIC_PAIRS: dict[tuple[bytes, bytes], int] = {}
_STATIC_NAMES: dict[bytes, int] = {}
for _index, (_name, _value) in enumerate(HeaderTable.STATIC_TABLE, start=1):
    _STATIC_PAIRS.setdefault((_name, _value), _index)
    _STATIC_NAMES.setdefault(_name, _index)
# Kept literals are forgotten all at once past this many, so unusual headers (a
# collapse id on every request, say) cannot grow the cache without limit.
_MAX_KEPT = 512


def integer(value: int, prefix_bits: int, flags: int) -> bytes:
    """An integer in HPACK's prefix coding, the flags in the first octet [5.1]."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((flags | value,))
    encoded = bytearray((flags | limit,))
    value -= limit
    while value >= 0x80:
        encoded.append((value & 0x7F) | 0x80)
        value >>= 7
    encoded.append(value)
    return bytes(encoded)


def string(value: bytes) -> bytes:
    """A string literal without Huffman coding [5.2]."""
    return integer(len(value), 7, 0x00) + value


class RequestHeaderEncoder:
    """Encodes the header blocks of one connection's requests.

    It has the two members h2 uses: `encode(headers)` and `header_table_size`, which
    h2 sets when the server announces SETTINGS_HEADER_TABLE_SIZE.
    """

    def __init__(self) -> None:
        self._setting = DEFAULT_TABLE_SIZE
        self._max_size = DEFAULT_TABLE_SIZE
        # Newest first, as the dynamic table is indexed [2.3.3].
        self._entries: list[tuple[bytes, bytes, int]] = []
        self._size = 0
        self._size_updates: list[int] = []
        self._kept: dict[tuple[bytes, bytes], bytes] = {}
        self._name_prefixes: dict[bytes, bytes] = {}

    @property
    def header_table_size(self) -> int:
        return self._setting

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        # A smaller table must be announced at the start of the next block [4.2];
        # a larger allowance is not taken up: the one entry fits in the default.
        self._setting = value
        new_max = min(value, DEFAULT_TABLE_SIZE)
        if new_max != self._max_size:
            self._max_size = new_max
            self._evict(0)
            self._size_updates.append(new_max)

    def encode(self, headers: list[tuple[bytes, bytes]]) -> bytes:
        block = bytearray()
        if self._size_updates:
            for size in self._size_updates:
                block += integer(size, 5, 0x20)
            self._size_updates.clear()

        kept = self._kept
        for header in headers:
            encoded = kept.get(header)
            if encoded is None:
                encoded = self._encode(header[0], header[1])
            block += encoded
        return bytes(block)

    def _encode(self, name: bytes, value: bytes) -> bytes:
        index = _STATIC_PAIRS.get((name, value))
        if index is not None:
            return self._keep(name, value, integer(index, 7, 0x80))

        if name in _INDEXED_NAMES:
            return self._indexed(name, value)

        prefix = self._name_prefixes.get(name)
        if prefix is None:
            name_index = _STATIC_NAMES.get(name)
            if name_index is not None:
                prefix = integer(name_index, 4, 0x00)
            else:
                prefix = b"\x00" + string(name)
            self._name_prefixes[name] = prefix
        encoded = prefix + string(value)
        if name != b":path" and name != b"apns-id":
            self._keep(name, value, encoded)
        return encoded

    def _indexed(self, name: bytes, value: bytes) -> bytes:
        """The header as an index into the dynamic table, added first if new."""
        for position, (entry_name, entry_value, _) in enumerate(self._entries):
            if entry_name == name and entry_value == value:
                return integer(_STATIC_COUNT + 1 + position, 7, 0x80)

        size = len(name) + len(value) + _ENTRY_OVERHEAD
        name_index = _STATIC_NAMES.get(name, 0)
        if size > self._max_size:
            # Too big for the table the server allows: sent whole every time.
            literal = integer(name_index, 4, 0x00)
            return literal + (b"" if name_index else string(name)) + string(value)

        self._evict(size)
        self._entries.insert(0, (name, value, size))
        self._size += size
        literal = integer(name_index, 6, 0x40)
        return literal + (b"" if name_index else string(name)) + string(value)

    def _evict(self, room: int) -> None:
        while self._entries and self._size + room > self._max_size:
            _, _, size = self._entries.pop()
            self._size -= size

    def _keep(self, name: bytes, value: bytes, encoded: bytes) -> bytes:
        if len(self._kept) >= _MAX_KEPT:
            self._kept.clear()
        self._kept[(name, value)] = encoded
        return encoded


# An integer longer than this many octets is no header block of a sane peer.
_MAX_INTEGER_OCTETS = 5


def _read_integer(data: bytes, position: int, prefix_bits: int) -> tuple[int, int]:
    """The integer at `position` and the position after it [5.1]."""
    limit = (1 << prefix_bits) - 1
    value = data[position] & limit
    position += 1
    if value < limit:
        return value, position
    shift = 0
    for _ in range(_MAX_INTEGER_OCTETS):
        if position >= len(data):
            raise HPACKDecodingError("header block ends inside an integer")
        octet = data[position]
        position += 1
        value += (octet & 0x7F) << shift
        if not octet & 0x80:
            return value, position
        shift += 7
    raise HPACKDecodingError("integer too long in header block")


class ResponseHeaderDecoder:
    """Decodes the header blocks of one connection's answers.

    It has the members h2 uses: `decode(data, raw)`, `max_header_list_size` and
    `max_allowed_table_size`. Names and values come out as bytes.
    """

    def __init__(self) -> None:
        self.max_header_list_size = 2**16
        self.max_allowed_table_size = DEFAULT_TABLE_SIZE
        self._max_size = DEFAULT_TABLE_SIZE
        self._entries: list[tuple[bytes, bytes]] = []
        self._sizes: list[int] = []
        self._size = 0
        self._decoded: dict[bytes, bytes] = {}

    @property
    def header_table_size(self) -> int:
        return self._max_size

    def decode(self, data: bytes, raw: bool = True) -> list[tuple[bytes, bytes]]:
        headers: list[tuple[bytes, bytes]] = []
        listed = 0
        position, end = 0, len(data)
        while position < end:
            first = data[position]
            if first & 0x80:
                index = first & 0x7F
                if index < 0x7F:
                    position += 1
                else:
                    index, position = _read_integer(data, position, 7)
                header = self._header(index)
            elif first & 0x40:
                index, position = _read_integer(data, position, 6)
                header, position = self._literal(data, position, index)
                self._add(header)
            elif first & 0x20:
                size, position = _read_integer(data, position, 5)
                if size > self.max_allowed_table_size:
                    raise HPACKDecodingError("table size update above the maximum")
                self._max_size = size
                self._evict(0)
                continue
            else:
                index = first & 0x0F
                if index < 0x0F:
                    position += 1
                else:
                    index, position = _read_integer(data, position, 4)
                header, position = self._literal(data, position, index)

            listed += len(header[0]) + len(header[1]) + _ENTRY_OVERHEAD
            if listed > self.max_header_list_size:
                raise OversizedHeaderListError("header list too large")
            headers.append(header)
        return headers

    def _header(self, index: int) -> tuple[bytes, bytes]:
        if 0 < index <= _STATIC_COUNT:
            return HeaderTable.STATIC_TABLE[index - 1]
        position = index - _STATIC_COUNT - 1
        if 0 <= position < len(self._entries):
            return self._entries[position]
        raise HPACKDecodingError(f"header index {index} is in no table")

    def _literal(
        self, data: bytes, position: int, name_index: int
    ) -> tuple[tuple[bytes, bytes], int]:
        if name_index:
            name = self._header(name_index)[0]
        else:
            name, position = self._string(data, position)
        value, position = self._string(data, position)
        return (name, value), position

    def _string(self, data: bytes, position: int) -> tuple[bytes, int]:
        if position >= len(data):
            raise HPACKDecodingError("header block ends before a string")
        first = data[position]
        huffman = first & 0x80
        length = first & 0x7F
        if length < 0x7F:
            position += 1
        else:
            length, position = _read_integer(data, position, 7)
        end = position + length
        if end > len(data):
            raise HPACKDecodingError("header block ends inside a string")
        octets = data[position:end]
        if not huffman:
            return octets, end

        decoded = self._decoded.get(octets)
        if decoded is None:
            decoded = decode_huffman(octets)
            if len(self._decoded) >= _MAX_KEPT:
                self._decoded.clear()
            self._decoded[octets] = decoded
        return decoded, end

    def _add(self, header: tuple[bytes, bytes]) -> None:
        size = len(header[0]) + len(header[1]) + _ENTRY_OVERHEAD
        self._evict(size)
        if size <= self._max_size:
            self._entries.insert(0, header)
            self._sizes.insert(0, size)
            self._size += size

    def _evict(self, room: int) -> None:
        while self._entries and self._size + room > self._max_size:
            self._entries.pop()
            self._size -= self._sizes.pop()
