package local

import (
	"encoding/json"
	"hash/fnv"
	"math/rand/v2"
	"sort"

	corev1 "k8s.io/api/core/v1"
)

// safeAlphabet is the alphabet Kubernetes uses for generated name suffixes:
// no vowels (no accidental words) and no look-alike characters.
const safeAlphabet = "bcdfghjklmnpqrstvwxz2456789"

// TemplateHash returns the pod-template-hash of a Deployment's template:
// replicas whose hash differs from the Deployment's current one are old and
// get replaced by a rollout.
func TemplateHash(t *corev1.PodTemplateSpec) string {
	raw, _ := json.Marshal(t) // a PodTemplateSpec always encodes
	h := fnv.New64a()
	h.Write(raw)
	sum := h.Sum64()
	b := make([]byte, 10)
	for i := range b {
		b[i] = safeAlphabet[sum%uint64(len(safeAlphabet))]
		sum /= uint64(len(safeAlphabet))
	}
	return string(b)
}

// PodName returns a fresh replica name: <deployment>-<hash>-<5 random>.
func PodName(deployment, hash string) string {
	b := make([]byte, 5)
	for i := range b {
		b[i] = safeAlphabet[rand.IntN(len(safeAlphabet))]
	}
	return deployment + "-" + hash + "-" + string(b)
}

// ReplicaView is what rollout planning needs to know about a live
// (not terminating) replica.
type ReplicaView struct {
	Name  string
	Hash  string
	Ready bool
	Seq   uint64 // creation order: larger is newer
}

// Plan is one step of a Deployment's rollout.
type Plan struct {
	Start int      // new replicas to start with the current template
	Stop  []string // replicas to stop
}

// PlanRollout decides one reconcile step for a Deployment whose current
// template has hash and which wants want replicas. It is a surge rollout:
// replicas of the current template are started at once, and an old replica
// is stopped only when a ready new one takes its place, so the number of
// ready replicas never drops below want during a rollout. Excess replicas
// (scale down) are stopped at once, not-ready and newest first, as the
// ReplicaSet controller chooses.
func PlanRollout(hash string, want int, live []ReplicaView) Plan {
	if want < 0 {
		want = 0
	}
	var cur, old []ReplicaView
	readyCur := 0
	for _, r := range live {
		if r.Hash == hash {
			cur = append(cur, r)
			if r.Ready {
				readyCur++
			}
		} else {
			old = append(old, r)
		}
	}
	var p Plan
	if len(cur) < want {
		p.Start = want - len(cur)
	}
	if len(cur) > want {
		sortForStop(cur)
		for _, r := range cur[:len(cur)-want] {
			p.Stop = append(p.Stop, r.Name)
			if r.Ready {
				readyCur--
			}
		}
	}
	keepOld := want - readyCur
	if keepOld < 0 {
		keepOld = 0
	}
	if len(old) > keepOld {
		sortForStop(old)
		for _, r := range old[:len(old)-keepOld] {
			p.Stop = append(p.Stop, r.Name)
		}
	}
	return p
}

// sortForStop orders replicas so the best ones to stop come first.
func sortForStop(rs []ReplicaView) {
	sort.SliceStable(rs, func(i, j int) bool {
		if rs[i].Ready != rs[j].Ready {
			return !rs[i].Ready
		}
		return rs[i].Seq > rs[j].Seq
	})
}
