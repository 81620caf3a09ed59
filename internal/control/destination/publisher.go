package destination

import "sync"

// listener receives every published snapshot.
//
// update is called with the publisher's lock held, from the watch goroutine
// or from subscribe: it must not block (translators only compute a diff and
// push it onto a bounded queue), and it is never called concurrently with
// itself, so a listener's own state needs no further locking.
type listener interface {
	update(*snapshot)
}

// publisher holds the current snapshot and fans each new one out to the
// subscribed listeners.
type publisher struct {
	mu        sync.Mutex
	current   *snapshot             // guarded by mu; nil until the first publish
	listeners map[listener]struct{} // guarded by mu
}

func newPublisher() *publisher {
	return &publisher{listeners: map[listener]struct{}{}}
}

// subscribe registers l and hands it the current snapshot, if any, so the
// stream answers at once. Registering and the first update happen under one
// lock, so l sees every later snapshot exactly once and in order.
func (p *publisher) subscribe(l listener) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.listeners[l] = struct{}{}
	if p.current != nil {
		l.update(p.current)
	}
}

// unsubscribe removes l; after it returns, l gets no more updates.
func (p *publisher) unsubscribe(l listener) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.listeners, l)
}

// publish makes s current and offers it to every listener.
func (p *publisher) publish(s *snapshot) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.current = s
	for l := range p.listeners {
		l.update(s)
	}
}

// ready reports whether a snapshot has been published.
func (p *publisher) ready() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.current != nil
}

// queue is a stream's bounded outbox. The publisher pushes onto it without
// blocking; the stream's goroutine drains it to gRPC. When the consumer
// falls so far behind that the queue is full, the queue is abandoned:
// overflowed is closed and the stream ends, so the proxy reconnects and
// starts again from a fresh snapshot instead of replaying a backlog.
type queue[T any] struct {
	items      chan T
	overflowed chan struct{}
	full       bool // guarded by the publisher's lock (only push touches it)
}

func newQueue[T any](capacity int) *queue[T] {
	return &queue[T]{items: make(chan T, capacity), overflowed: make(chan struct{})}
}

// push enqueues item without blocking. It reports false if the queue is
// (or just became) abandoned. Callers hold the publisher's lock.
func (q *queue[T]) push(item T) bool {
	if q.full {
		return false
	}
	select {
	case q.items <- item:
		return true
	default:
		q.full = true
		close(q.overflowed)
		return false
	}
}
