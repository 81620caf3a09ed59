package ratelimit

import (
	"bufio"
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// redisServer is a real redis-server child process on a loopback port.
type redisServer struct {
	addr string
	cmd  *exec.Cmd
}

// startRedis runs redis-server on addr ("" picks a free port). Tests skip
// when redis-server is not installed (apt-get install -y redis-server).
func startRedis(t *testing.T, addr string) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed (apt-get install -y redis-server); skipping the Redis tests")
	}
	if addr == "" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = l.Addr().String()
		l.Close()
	}
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir(), "--loglevel", "warning")
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting redis-server: %v", err)
	}
	r := &redisServer{addr: addr, cmd: cmd}
	t.Cleanup(r.stop)
	waitFor(t, "redis-server to answer PING on "+addr, func() bool { return redisPing(addr) })
	return r
}

func (r *redisServer) stop() {
	if r.cmd.ProcessState == nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
	}
}

func redisPing(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

func TestRedisSharedLimit(t *testing.T) {
	rs := startRedis(t, "")
	c := newClock()
	workshop := map[string][]byte{"workshop": WorkshopConfig()}
	// Two replicas of the service, one Redis: the limit is shared.
	s1, _ := startServer(t, ServerConfig{Builtin: workshop, RedisAddr: rs.addr, Now: c.Now, KeyPrefix: "t1_"})
	s2, _ := startServer(t, ServerConfig{Builtin: workshop, RedisAddr: rs.addr, Now: c.Now, KeyPrefix: "t1_"})
	c1, c2 := newTestClient(t, s1.Addr().String()), newTestClient(t, s2.Addr().String())
	ctx := context.Background()
	face := []Descriptor{{{"mykey", "myvalue"}}}
	for i := range 10 {
		cl := c1
		if i%2 == 1 {
			cl = c2
		}
		d, err := cl.Check(ctx, WorkshopDomain, face)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if want := i >= 8; d.Limited != want {
			t.Fatalf("call %d (replica %d): limited = %v, want %v", i, i%2+1, d.Limited, want)
		}
		if want := uint32(max(0, 7-i)); d.Statuses[0].Remaining != want {
			t.Fatalf("call %d: remaining %d, want %d", i, d.Statuses[0].Remaining, want)
		}
	}
	// The counter is in Redis under envoyproxy/ratelimit's key form, and
	// expires after its window.
	start := c.Now().Unix()
	key := "t1_emissary_mykey_myvalue_" + strconv.FormatInt(start, 10)
	if v := redisCmd(t, rs.addr, "GET", key); v != "10" {
		t.Fatalf("GET %s = %q, want 10", key, v)
	}
	if ttl, _ := strconv.Atoi(redisCmd(t, rs.addr, "PTTL", key)); ttl <= 0 || ttl > 2000 {
		t.Fatalf("PTTL %s = %d, want within the second (plus the margin)", key, ttl)
	}
	// The next window starts afresh on both replicas.
	c.Add(time.Second)
	if d, err := c2.Check(ctx, WorkshopDomain, face); err != nil || d.Limited {
		t.Fatalf("next window: %+v %v", d, err)
	}
	admin := "http://" + s1.AdminAddr().String()
	if code, body := httpGet(t, admin+"/ready"); code != 200 {
		t.Fatalf("/ready = %d %s", code, body)
	}

	// Redis lost: each request fails with a clear error, /ready says why.
	rs.stop()
	_, err := c1.Check(ctx, WorkshopDomain, face)
	if err == nil || !strings.Contains(err.Error(), "Unavailable") || !strings.Contains(err.Error(), "redis "+rs.addr) {
		t.Fatalf("with Redis down: %v, want Unavailable naming redis %s", err, rs.addr)
	}
	if code, body := httpGet(t, admin+"/ready"); code != 503 || !strings.Contains(body, "redis") {
		t.Fatalf("/ready with Redis down = %d %s", code, body)
	}
	// Redis back (empty): both replicas recover by themselves.
	startRedis(t, rs.addr)
	for i, cl := range []*Client{c1, c2} {
		waitFor(t, "replica to use Redis again", func() bool {
			d, err := cl.Check(ctx, WorkshopDomain, face)
			return err == nil && !d.Limited
		})
		_ = i
	}
	if v := redisCmd(t, rs.addr, "GET", "t1_emissary_mykey_myvalue_"+strconv.FormatInt(start+1, 10)); v == "" {
		t.Fatal("no counter in the restarted Redis")
	}
}

// redisCmd runs one command over RESP and returns a simple reply's text.
func redisCmd(t *testing.T, addr string, args ...string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	var b strings.Builder
	b.WriteString("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b.WriteString("$" + strconv.Itoa(len(a)) + "\r\n" + a + "\r\n")
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	line = strings.TrimRight(line, "\r\n")
	switch line[0] {
	case ':', '+':
		return line[1:]
	case '$':
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			return ""
		}
		data, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimRight(data, "\r\n")
	}
	t.Fatalf("redis %v: %s", args, line)
	return ""
}
