package retry

import (
	"errors"
	"io"
	"sync"
)

// MaxBody is the largest request body kept for replay (Linkerd's
// max_request_bytes): a request with a longer body is never retried.
const MaxBody = 64 << 10

var errStaleAttempt = errors.New("retry: request body superseded by a retry")

// Replay shares one request body between attempts. The first attempt reads
// the source and records what it read, up to max bytes; a later attempt
// reads the record, then continues from the source where the previous
// attempt stopped. Only the newest attempt may read: an older attempt's
// transport still writing when a retry starts gets an error instead of
// corrupting the stream. Nothing is buffered beyond what was read.
type Replay struct {
	mu     sync.Mutex
	src    io.ReadCloser
	max    int
	buf    []byte
	over   bool  // more than max read: the record is gone, no replay
	err    error // the source's terminal error (io.EOF at the end)
	gen    int   // generation of the newest reader
	closed bool  // src closed
	final  bool  // the layer is done: the newest reader's Close closes src
	// newestClosed: the newest reader was closed before the layer finished.
	newestClosed bool
}

// NewReplay records src for replay, keeping at most max bytes. Call Body
// for each attempt's body and Finish when the last attempt is chosen.
func NewReplay(src io.ReadCloser, max int) *Replay { return &Replay{src: src, max: max} }

// Body returns the body of the next attempt; ok is false when the body
// cannot be replayed (it outgrew the record). Older attempts' bodies stop
// working.
func (r *Replay) Body() (io.ReadCloser, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.over && r.gen > 0 {
		return nil, false
	}
	r.gen++
	r.newestClosed = false
	return &replayReader{r: r, gen: r.gen}, true
}

// Replayable reports whether another attempt could replay the body.
func (r *Replay) Replayable() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.over
}

// Finish is called when no more attempts will be made: from then on the
// newest body's Close (or, if it was closed already, now) closes the source.
func (r *Replay) Finish() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.final = true
	if r.newestClosed {
		r.closeSrc()
	}
}

func (r *Replay) closeSrc() {
	if !r.closed {
		r.closed = true
		r.src.Close()
	}
}

type replayReader struct {
	r   *Replay
	gen int
	off int
}

func (rr *replayReader) Read(p []byte) (int, error) {
	r := rr.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if rr.gen != r.gen {
		return 0, errStaleAttempt
	}
	if rr.off < len(r.buf) {
		n := copy(p, r.buf[rr.off:])
		rr.off += n
		return n, nil
	}
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.src.Read(p)
	if n > 0 && !r.over {
		if len(r.buf)+n > r.max {
			r.over, r.buf = true, nil
		} else {
			r.buf = append(r.buf, p[:n]...)
		}
	}
	if r.over {
		rr.off = 0 // offsets no longer index a record
	} else {
		rr.off += n
	}
	if err != nil {
		r.err = err
	}
	return n, err
}

func (rr *replayReader) Close() error {
	r := rr.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if rr.gen != r.gen {
		return nil
	}
	if r.final {
		r.closeSrc()
	} else {
		r.newestClosed = true
	}
	return nil
}
