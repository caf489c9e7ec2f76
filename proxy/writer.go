package proxy

import "io"

// frameWriter coalesces frames into large writes: one write per burst of
// messages instead of one per message. Every syscall on the per-message path
// shows in pgbench, so the pumps flush only before they would block on a
// read.
type frameWriter struct {
	w   io.Writer
	buf []byte
	// beforeWrite, when set, runs before any byte goes out.
	beforeWrite func()
}

func newFrameWriter(w io.Writer) *frameWriter {
	return &frameWriter{w: w, buf: make([]byte, 0, bufSize)}
}

// write queues b, flushing first if it would not fit. Frames larger than the
// buffer are written straight through.
func (w *frameWriter) write(b []byte) error {
	if len(w.buf)+len(b) > cap(w.buf) {
		if err := w.flush(); err != nil {
			return err
		}
		if len(b) >= cap(w.buf) {
			if w.beforeWrite != nil {
				w.beforeWrite()
			}
			_, err := w.w.Write(b)
			return err
		}
	}
	w.buf = append(w.buf, b...)
	return nil
}

// flush writes whatever is queued.
func (w *frameWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	if w.beforeWrite != nil {
		w.beforeWrite()
	}
	_, err := w.w.Write(w.buf)
	w.buf = w.buf[:0]
	return err
}
