package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// Toxi runs toxiproxy in this process: TCP links whose latency can be
// raised and which can be cut, in front of the broker and the store, so
// that the roles see what a slow or partitioned network does to them.
type Toxi struct {
	server *toxiproxy.ApiServer

	mu    sync.Mutex
	links []*Link
}

// NewToxi returns a toxiproxy with no links. Its HTTP API is not started:
// links are driven from Go.
func NewToxi() *Toxi {
	return &Toxi{server: toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())}
}

// Link is one proxied TCP link: clients connect to Addr, toxiproxy
// connects on to the upstream.
type Link struct {
	name  string
	proxy *toxiproxy.Proxy

	mu   sync.Mutex
	cut  bool
	hole bool
	// Counts of the toxics applied, for the chaos report.
	Cuts, Delays, Stalls, Blackholes int
}

// Link starts a link named name on a free loopback port to upstream.
func (t *Toxi) Link(name, upstream string) (*Link, error) {
	p := toxiproxy.NewProxy(t.server, name, "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("toxiproxy link %s: %w", name, err)
	}
	l := &Link{name: name, proxy: p}
	t.mu.Lock()
	t.links = append(t.links, l)
	t.mu.Unlock()
	return l, nil
}

// Close stops every link.
func (t *Toxi) Close() {
	t.mu.Lock()
	links := t.links
	t.links = nil
	t.mu.Unlock()
	for _, l := range links {
		l.proxy.Stop()
	}
}

// Addr is the address clients connect to (stable across Cut and Restore).
func (l *Link) Addr() string {
	l.proxy.Lock()
	defer l.proxy.Unlock()
	return l.proxy.Listen
}

// SetLatency adds d (plus up to jitter) to every chunk from the upstream
// back to the client, so to every request/response round trip; 0 removes
// it.
func (l *Link) SetLatency(d, jitter time.Duration) error { return l.setLatency(d, jitter, &l.Delays) }

// setLatency replaces the latency toxic, counting it in count.
func (l *Link) setLatency(d, jitter time.Duration, count *int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	_ = l.proxy.Toxics.RemoveToxic(context.Background(), "latency")
	if d <= 0 {
		return nil
	}
	*count++
	body := fmt.Sprintf(`{"name":"latency","type":"latency","stream":"downstream","toxicity":1,"attributes":{"latency":%d,"jitter":%d}}`,
		d.Milliseconds(), jitter.Milliseconds())
	if _, err := l.proxy.Toxics.AddToxicJson(strings.NewReader(body)); err != nil {
		return fmt.Errorf("toxiproxy link %s: add latency: %w", l.name, err)
	}
	return nil
}

// Stall holds every byte from the upstream for d before passing it on,
// dropping nothing: a partition that heals, as TCP retransmission makes it
// look to both ends. SetLatency(0, 0) ends it.
func (l *Link) Stall(d time.Duration) error { return l.setLatency(d, 0, &l.Stalls) }

// Blackhole makes the link swallow everything in both directions without
// closing the connections, or ends that. The swallowed bytes are lost
// while the connections stay up, which TCP never does: streams resume with
// whole requests or responses missing. Stall is the realistic partition.
func (l *Link) Blackhole(on bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if on == l.hole {
		return nil
	}
	l.hole = on
	for _, dir := range []string{"upstream", "downstream"} {
		name := "hole_" + dir
		if !on {
			_ = l.proxy.Toxics.RemoveToxic(context.Background(), name)
			continue
		}
		body := fmt.Sprintf(`{"name":%q,"type":"timeout","stream":%q,"toxicity":1,"attributes":{"timeout":0}}`, name, dir)
		if _, err := l.proxy.Toxics.AddToxicJson(strings.NewReader(body)); err != nil {
			return fmt.Errorf("toxiproxy link %s: blackhole: %w", l.name, err)
		}
	}
	if on {
		l.Blackholes++
	}
	return nil
}

// Cut closes every connection of the link and refuses new ones until
// Restore: a network partition the clients notice at once.
func (l *Link) Cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cut {
		return
	}
	l.cut = true
	l.Cuts++
	l.proxy.Stop()
}

// Restore ends a Cut: the link listens again on the same address.
func (l *Link) Restore() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.cut {
		return nil
	}
	var err error
	// The port was just released; rebinding it can fail for a moment.
	for i := 0; i < 50; i++ {
		if err = l.proxy.Start(); err == nil || err == toxiproxy.ErrProxyAlreadyStarted {
			l.cut = false
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("toxiproxy link %s: restore: %w", l.name, err)
}

// Heal removes every toxic and ends a cut.
func (l *Link) Heal() error {
	if err := l.SetLatency(0, 0); err != nil {
		return err
	}
	if err := l.Blackhole(false); err != nil {
		return err
	}
	return l.Restore()
}
