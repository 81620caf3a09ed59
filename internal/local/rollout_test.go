package local

import (
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

func TestPlanRollout(t *testing.T) {
	r := func(name, hash string, ready bool, seq uint64) ReplicaView {
		return ReplicaView{Name: name, Hash: hash, Ready: ready, Seq: seq}
	}
	for _, tc := range []struct {
		name string
		want int
		live []ReplicaView
		plan Plan
	}{
		{"fresh start", 2, nil, Plan{Start: 2}},
		{"steady", 2, []ReplicaView{r("a", "h", true, 1), r("b", "h", true, 2)}, Plan{}},
		{"scale up", 3, []ReplicaView{r("a", "h", true, 1)}, Plan{Start: 2}},
		{"scale down stops newest", 1, []ReplicaView{r("a", "h", true, 1), r("b", "h", true, 2), r("c", "h", true, 3)},
			Plan{Stop: []string{"c", "b"}}},
		{"scale down stops not ready first", 2, []ReplicaView{r("a", "h", true, 1), r("b", "h", false, 2), r("c", "h", true, 3)},
			Plan{Stop: []string{"b"}}},
		{"rollout begins: surge, keep old", 2, []ReplicaView{r("a", "old", true, 1), r("b", "old", true, 2)},
			Plan{Start: 2}},
		{"rollout: new not ready yet", 2, []ReplicaView{r("a", "old", true, 1), r("b", "old", true, 2), r("c", "h", false, 3), r("d", "h", false, 4)},
			Plan{}},
		{"rollout: one new ready stops one old", 2, []ReplicaView{r("a", "old", true, 1), r("b", "old", true, 2), r("c", "h", true, 3), r("d", "h", false, 4)},
			Plan{Stop: []string{"b"}}},
		{"rollout: prefers stopping not-ready old", 2, []ReplicaView{r("a", "old", false, 1), r("b", "old", true, 2), r("c", "h", true, 3), r("d", "h", false, 4)},
			Plan{Stop: []string{"a"}}},
		{"rollout done", 2, []ReplicaView{r("a", "old", true, 1), r("b", "old", true, 2), r("c", "h", true, 3), r("d", "h", true, 4)},
			Plan{Stop: []string{"b", "a"}}},
		{"scale to zero", 0, []ReplicaView{r("a", "old", true, 1), r("b", "h", true, 2)},
			Plan{Stop: []string{"b", "a"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := PlanRollout("h", tc.want, tc.live)
			if d := cmp.Diff(tc.plan, got); d != "" {
				t.Errorf("plan (-want +got):\n%s", d)
			}
		})
	}
}

// TestRolloutNeverDropsReady simulates a rollout step by step, making one
// started replica ready per step, and checks the ready count never drops
// below the wanted replicas.
func TestRolloutNeverDropsReady(t *testing.T) {
	for want := 1; want <= 4; want++ {
		var live []ReplicaView
		seq := uint64(0)
		for range want {
			seq++
			live = append(live, ReplicaView{Name: string(rune('a' + seq)), Hash: "old", Ready: true, Seq: seq})
		}
		for step := 0; step < 20; step++ {
			p := PlanRollout("new", want, live)
			stop := map[string]bool{}
			for _, n := range p.Stop {
				stop[n] = true
			}
			var next []ReplicaView
			for _, r := range live {
				if !stop[r.Name] {
					next = append(next, r)
				}
			}
			for range p.Start {
				seq++
				next = append(next, ReplicaView{Name: string(rune('a' + seq)), Hash: "new", Seq: seq})
			}
			ready := 0
			for _, r := range next {
				if r.Ready {
					ready++
				}
			}
			if ready < want {
				t.Fatalf("want=%d step %d: %d ready replicas after plan %+v", want, step, ready, p)
			}
			// One new replica becomes ready per step.
			sort.Slice(next, func(i, j int) bool { return next[i].Seq < next[j].Seq })
			for i := range next {
				if !next[i].Ready {
					next[i].Ready = true
					break
				}
			}
			live = next
		}
		for _, r := range live {
			if r.Hash != "new" {
				t.Fatalf("want=%d: old replica %s still live after rollout", want, r.Name)
			}
		}
		if len(live) != want {
			t.Fatalf("want=%d: %d replicas after rollout", want, len(live))
		}
	}
}

func TestTemplateHash(t *testing.T) {
	a := &corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Env: []corev1.EnvVar{{Name: "A", Value: "1"}}}}}}
	b := a.DeepCopy()
	if TemplateHash(a) != TemplateHash(b) {
		t.Fatal("equal templates hash differently")
	}
	b.Spec.Containers[0].Env[0].Value = "2"
	if TemplateHash(a) == TemplateHash(b) {
		t.Fatal("an env change did not change the hash")
	}
	if h := TemplateHash(a); len(h) != 10 {
		t.Fatalf("hash %q: want 10 characters", h)
	}
}

func TestReadinessThreshold(t *testing.T) {
	type obs struct{ ok, gone bool }
	for _, tc := range []struct {
		name string
		seq  []obs
		want []bool
	}{
		{"one success is ready", []obs{{false, false}, {true, false}}, []bool{false, true}},
		{"three failures to unready", []obs{{true, false}, {false, false}, {false, false}, {false, false}}, []bool{true, true, true, false}},
		{"a success resets the count", []obs{{true, false}, {false, false}, {false, false}, {true, false}, {false, false}, {false, false}}, []bool{true, true, true, true, true, true}},
		{"a dead process is unready at once", []obs{{true, false}, {false, true}}, []bool{true, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rd readiness
			for i, o := range tc.seq {
				if got := rd.observe(o.ok, o.gone, 3); got != tc.want[i] {
					t.Fatalf("step %d (%+v): ready = %v, want %v", i, o, got, tc.want[i])
				}
			}
		})
	}
}
