package local

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Restart backoff: a crashing process is restarted after 250ms, then 500ms,
// 1s, ... up to 30s; a process that ran for stableAfter resets the backoff.
const (
	backoffInitial = 250 * time.Millisecond
	backoffMax     = 30 * time.Second
	stableAfter    = 10 * time.Second
)

// Process is one supervised OS process: started, restarted with exponential
// backoff when it exits, and stopped gracefully (SIGTERM, then SIGKILL after
// Grace).
type Process struct {
	Name    string // for logs: "ns/pod/container"
	Argv    []string
	Env     []string
	LogPath string
	Grace   time.Duration
	Logger  *slog.Logger
	// OnChange is called (from the process's goroutine) after it starts or
	// exits; it must not block.
	OnChange func()

	mu       sync.Mutex
	pid      int
	restarts int
	lastExit string
	cancel   context.CancelFunc
	done     chan struct{}
}

// ProcessState is a snapshot of a Process.
type ProcessState struct {
	PID      int    // 0 when not running
	Restarts int    // how many times it was restarted
	LastExit string // why it last exited, if it did
}

// Start runs the process until ctx ends or Stop is called.
func (p *Process) Start(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Dir(p.LogPath), 0o755); err != nil {
		return fmt.Errorf("local: log directory for %s: %w", p.Name, err)
	}
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("local: log file for %s: %w", p.Name, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	p.mu.Lock()
	p.cancel = cancel
	p.done = make(chan struct{})
	p.mu.Unlock()
	go func() {
		defer close(p.done)
		defer logf.Close()
		p.loop(ctx, logf)
	}()
	return nil
}

// Stop stops the process gracefully and waits for it to exit.
func (p *Process) Stop() {
	p.mu.Lock()
	cancel, done := p.cancel, p.done
	p.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// Signal sends sig to the running process, if any.
func (p *Process) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	pid := p.pid
	p.mu.Unlock()
	if pid == 0 {
		return fmt.Errorf("local: %s is not running", p.Name)
	}
	return syscall.Kill(pid, sig)
}

// State returns a snapshot.
func (p *Process) State() ProcessState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return ProcessState{PID: p.pid, Restarts: p.restarts, LastExit: p.lastExit}
}

func (p *Process) changed() {
	if p.OnChange != nil {
		p.OnChange()
	}
}

func (p *Process) loop(ctx context.Context, logf *os.File) {
	backoff := backoffInitial
	for {
		started := time.Now()
		exit := p.runOnce(ctx, logf)
		p.mu.Lock()
		p.pid = 0
		p.lastExit = exit
		p.mu.Unlock()
		p.changed()
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > stableAfter {
			backoff = backoffInitial
		}
		p.Logger.Warn("process exited; restarting", "process", p.Name, "exit", exit, "backoff", backoff)
		fmt.Fprintf(logf, "weft: %s exited (%s); restarting in %s\n", p.Name, exit, backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, backoffMax)
		p.mu.Lock()
		p.restarts++
		p.mu.Unlock()
	}
}

// runOnce starts the process and waits for it to exit or for ctx to end,
// returning a description of how it ended.
func (p *Process) runOnce(ctx context.Context, logf *os.File) string {
	cmd := exec.Command(p.Argv[0], p.Argv[1:]...)
	cmd.Env = p.Env
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return "start failed: " + err.Error()
	}
	p.mu.Lock()
	p.pid = cmd.Process.Pid
	p.mu.Unlock()
	p.changed()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var err error
	select {
	case err = <-waited:
	case <-ctx.Done():
		pid := cmd.Process.Pid
		// The process leads its own group (see sysProcAttr); signal the
		// group so helpers it started stop too.
		_ = syscall.Kill(-pid, syscall.SIGTERM)
		grace := p.Grace
		if grace <= 0 {
			grace = 10 * time.Second
		}
		t := time.NewTimer(grace)
		select {
		case err = <-waited:
			t.Stop()
		case <-t.C:
			p.Logger.Warn("process did not stop in time; killing it", "process", p.Name, "grace", grace)
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			err = <-waited
		}
	}
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}
