package proxy

import (
	"bytes"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestFillGrowsWithTheBytes: a header announcing 1 GiB gets a buffer as
// large as what actually arrives, not 1 GiB up front (a review held 15 GB
// with eight such headers).
func TestFillGrowsWithTheBytes(t *testing.T) {
	hdr := []byte{'Q', 0x3f, 0xff, 0xff, 0xff}
	body := bytes.Repeat([]byte{'x'}, 200<<10)
	f := newFrameReader(io.MultiReader(bytes.NewReader(hdr), bytes.NewReader(body)))
	_, size, err := f.peekHeader()
	require.NoError(t, err)
	require.Equal(t, 1<<30, size)
	require.ErrorIs(t, f.fill(size), io.ErrUnexpectedEOF)
	require.Equal(t, len(hdr)+len(body), f.buffered())
	require.LessOrEqual(t, len(f.buf), 2*(len(hdr)+len(body)))

	// A frame that does arrive whole is read whole, across growths.
	msg := append([]byte{'Q', 0, 0x04, 0, 4}, bytes.Repeat([]byte{'y'}, 0x40000)...)
	f = newFrameReader(bytes.NewReader(msg))
	got, err := f.next()
	require.NoError(t, err)
	require.Equal(t, msg, got)
}
