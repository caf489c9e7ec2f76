package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Protocol limits, mirroring src/backend/libpq/pqcomm.c and
// src/include/libpq/pqcomm.h: a regular message may be up to 1 GiB - 1
// (PQ_LARGE_MESSAGE_LIMIT); the startup packet at most 10000 bytes
// (MAX_STARTUP_PACKET_LENGTH).
const (
	maxMessageLen = 1<<30 - 1
	maxStartupLen = 10000
	// maxAuthResponse bounds a password or SASL message before login:
	// PG_MAX_AUTH_TOKEN_LENGTH (65535) plus the header.
	maxAuthResponse = 65535 + 5
	// bufSize is the read and write buffer size of each direction. The
	// benchmarks on this machine kind showed 64 KiB plain reads and writes
	// beat both splice and smaller buffers for small-message traffic.
	bufSize = 64 * 1024
)

// errWouldBlock is returned by a non-blocking reader that has nothing yet.
var errWouldBlock = errors.New("no data yet")

// errMessageLength is returned when a frame header announces a length the
// protocol does not allow.
var errMessageLength = errors.New("invalid message length")

// frameReader frames PostgreSQL messages (1 type byte + 4 byte big-endian
// length that counts itself) on top of a buffered reader. It hands out views
// into its buffer, so callers must finish with one frame before asking for
// the next.
type frameReader struct {
	r          io.Reader
	buf        []byte
	start, end int
	max        int // largest message body this reader will buffer whole
}

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{r: r, buf: make([]byte, bufSize), max: maxMessageLen}
}

// buffered reports how many unread bytes are in the buffer.
func (f *frameReader) buffered() int { return f.end - f.start }

// header returns the type and the total length (type byte included) of the
// next message, reading more if needed. hasHeader reports whether a full
// header is already buffered, without reading.
func (f *frameReader) hasHeader() bool { return f.buffered() >= 5 }

// peekHeader makes sure a header is buffered and decodes it. The returned
// size counts the whole frame: 1 type byte plus the length field's value.
func (f *frameReader) peekHeader() (typ byte, size int, err error) {
	if err := f.fill(5); err != nil {
		return 0, 0, err
	}
	typ = f.buf[f.start]
	n := binary.BigEndian.Uint32(f.buf[f.start+1:])
	if n < 4 || n > maxMessageLen {
		return typ, 0, fmt.Errorf("%w: %d for message type %q", errMessageLength, n, typ)
	}
	return typ, int(n) + 1, nil
}

// fill ensures at least n bytes are buffered, growing the buffer if n is
// larger than it. The buffer grows as the bytes arrive, at most doubling
// at a time, never to the size a header announces before its body comes:
// a 5-byte header announcing 1 GiB gets no 1 GiB buffer.
func (f *frameReader) fill(n int) error {
	if f.buffered() >= n {
		return nil
	}
	if f.start > 0 && f.start+n > len(f.buf) {
		f.end = copy(f.buf, f.buf[f.start:f.end])
		f.start = 0
	}
	for f.buffered() < n {
		if f.end == len(f.buf) {
			// Full, and start is 0 (compacted above, or n fits).
			nb := make([]byte, min(n, 2*len(f.buf)))
			f.end = copy(nb, f.buf[:f.end])
			f.buf = nb
		}
		m, err := f.r.Read(f.buf[f.end:])
		f.end += m
		if err != nil {
			if f.buffered() >= n {
				return nil
			}
			if errors.Is(err, io.EOF) && f.buffered() > 0 {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// readSome reads once, whatever the reader has (the event loop's read:
// the socket is known to be readable). The buffer is compacted first when
// it is full.
func (f *frameReader) readSome() error {
	if f.start == f.end {
		f.start, f.end = 0, 0
	} else if f.end == len(f.buf) {
		f.end = copy(f.buf, f.buf[f.start:f.end])
		f.start = 0
	}
	n, err := f.r.Read(f.buf[f.end:])
	f.end += n
	return err
}

// next returns the whole next frame (header included), buffering it
// entirely. The slice is valid until the next call on f.
func (f *frameReader) next() ([]byte, error) {
	_, size, err := f.peekHeader()
	if err != nil {
		return nil, err
	}
	if err := f.fill(size); err != nil {
		return nil, err
	}
	msg := f.buf[f.start : f.start+size]
	f.start += size
	f.shrink()
	return msg, nil
}

// shrink returns an oversized buffer to the normal size once it is drained,
// so one huge statement does not pin memory for the session's lifetime.
func (f *frameReader) shrink() {
	if f.start == f.end {
		f.start, f.end = 0, 0
		if len(f.buf) > 4*bufSize {
			f.buf = make([]byte, bufSize)
		}
	}
}

// discard consumes n bytes without keeping them: what is buffered, then
// reads of at most the buffer's size.
func (f *frameReader) discard(n int) error {
	for n > 0 {
		if f.buffered() == 0 {
			f.start, f.end = 0, 0
			if err := f.readSome(); err != nil && f.buffered() == 0 {
				return err
			}
		}
		k := min(n, f.buffered())
		f.start += k
		n -= k
	}
	f.shrink()
	return nil
}

// take consumes up to n bytes already in the buffer and returns them.
func (f *frameReader) take(n int) []byte {
	n = min(n, f.buffered())
	b := f.buf[f.start : f.start+n]
	f.start += n
	f.shrink()
	return b
}

// readStartup reads a length-prefixed startup-phase packet (no type byte):
// StartupMessage, SSLRequest, GSSENCRequest or CancelRequest.
func (f *frameReader) readStartup() ([]byte, error) {
	if err := f.fill(4); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(f.buf[f.start:])
	if n < 8 || n > maxStartupLen {
		return nil, fmt.Errorf("%w: startup packet of %d bytes", errMessageLength, n)
	}
	if err := f.fill(int(n)); err != nil {
		return nil, err
	}
	pkt := f.buf[f.start : f.start+int(n)]
	f.start += int(n)
	f.shrink()
	return pkt, nil
}
