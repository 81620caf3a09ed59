package destination

import (
	"net/netip"
	"sort"

	pb "github.com/linkerd/linkerd2-proxy-api/go/destination"
	pbnet "github.com/linkerd/linkerd2-proxy-api/go/net"
	"google.golang.org/protobuf/proto"
)

// endpointTranslator follows one Get stream's target across snapshots and
// turns the changes into Updates: the first message is the full set (an
// add, or no_endpoints when empty); later messages are diffs.
type endpointTranslator struct {
	target  target
	q       *queue[[]*pb.Update]
	metrics *Metrics

	// State of what was sent; touched only from update (publisher lock).
	sent   bool
	exists bool
	addrs  map[netip.AddrPort]endpoint
}

var _ listener = (*endpointTranslator)(nil)

func newEndpointTranslator(t target, capacity int, m *Metrics) *endpointTranslator {
	return &endpointTranslator{target: t, q: newQueue[[]*pb.Update](capacity), metrics: m}
}

func (et *endpointTranslator) update(s *snapshot) {
	if et.q.full {
		return
	}
	batch := et.diff(s.resolve(et.target), s.weightedAddr)
	if len(batch) == 0 {
		return
	}
	if !et.q.push(batch) {
		et.metrics.overflows[rpcGet].Add(1)
	}
}

// diff returns the messages that take the proxy from what was sent to set,
// and records set as sent. One snapshot yields one batch, so a queue slot
// is one snapshot's worth of change.
//
// toPB turns an endpoint into its message; the snapshot's weightedAddr
// shares one message per endpoint among every stream.
func (et *endpointTranslator) diff(set endpointSet, toPB func(endpoint) *pb.WeightedAddr) []*pb.Update {
	var batch []*pb.Update
	var removed []netip.AddrPort
	for ap := range et.addrs {
		if _, ok := set.addrs[ap]; !ok {
			removed = append(removed, ap)
		}
	}
	if len(removed) > 0 {
		sort.Slice(removed, func(i, j int) bool { return removed[i].Compare(removed[j]) < 0 })
		addrs := make([]*pbnet.TcpAddress, len(removed))
		for i, ap := range removed {
			addrs[i] = toTCPAddress(ap)
		}
		batch = append(batch, &pb.Update{Update: &pb.Update_Remove{Remove: &pb.AddrSet{Addrs: addrs}}})
	}
	var added []netip.AddrPort
	for ap, ep := range set.addrs {
		// An endpoint whose details changed is re-added: the proxy replaces
		// an address it already has.
		if old, ok := et.addrs[ap]; !ok || old != ep {
			added = append(added, ap)
		}
	}
	if len(added) > 0 {
		sort.Slice(added, func(i, j int) bool { return added[i].Compare(added[j]) < 0 })
		was := make([]*pb.WeightedAddr, len(added))
		for i, ap := range added {
			was[i] = toPB(set.addrs[ap])
		}
		batch = append(batch, &pb.Update{Update: &pb.Update_Add{Add: &pb.WeightedAddrSet{Addrs: was, MetricLabels: set.labels}}})
	}
	if len(set.addrs) == 0 && (!et.sent || len(et.addrs) > 0 || et.exists != set.exists) {
		batch = append(batch, &pb.Update{Update: &pb.Update_NoEndpoints{NoEndpoints: &pb.NoEndpoints{Exists: set.exists}}})
	}
	et.sent, et.exists, et.addrs = true, set.exists, set.addrs
	return batch
}

// profileTranslator follows one GetProfile stream's target across
// snapshots and sends the profile whenever it differs from the last one sent.
type profileTranslator struct {
	target   target
	callerNS string
	domain   string
	q        *queue[*pb.DestinationProfile]
	metrics  *Metrics

	last *pb.DestinationProfile // touched only from update (publisher lock)
}

var _ listener = (*profileTranslator)(nil)

func newProfileTranslator(t target, callerNS, domain string, capacity int, m *Metrics) *profileTranslator {
	return &profileTranslator{target: t, callerNS: callerNS, domain: domain, q: newQueue[*pb.DestinationProfile](capacity), metrics: m}
}

func (pt *profileTranslator) update(s *snapshot) {
	if pt.q.full {
		return
	}
	p := s.profileFor(pt.target, pt.callerNS, pt.domain)
	if pt.last != nil && proto.Equal(pt.last, p) {
		return
	}
	pt.last = p
	if !pt.q.push(p) {
		pt.metrics.overflows[rpcGetProfile].Add(1)
	}
}
