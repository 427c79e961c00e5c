// Package tchannelmock runs tchannel-mock for the length of a test: it starts
// the binary on an ephemeral port with the given cassettes, exposes the
// TChannel address and a typed admin API client, and stops it on teardown.
// See docs/clients-go.md in the tchannel-vcr repository.
package tchannelmock

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const stderrKeep = 64 * 1024

// What stdout keeps before the listening and admin lines (for the error when
// they never come); after them, nothing.
const (
	seenKeep    = 64
	partialKeep = 16 * 1024
)

// Options say how to start tchannel-mock. Zero values are the mock's defaults.
type Options struct {
	Cassettes    []string // files or directories, in the order the mock asks them
	Mode         string   // once, new_episodes, none or all
	Upstreams    []string // the real service(s) for record-through, HOST:PORT
	RecordTo     string
	AllowRepeats bool
	Match        []string
	Args         []string // extra command-line arguments, before the cassettes

	Bin        string   // path of tchannel-mock; else $TCHANNEL_MOCK_BIN, else PATH
	Env        []string // the child's environment (nil: ours)
	Dir        string   // the child's working directory
	Host       string   // listen address (default 127.0.0.1)
	AdminToken string   // written to a private file passed as --admin-token-file
	// CassetteRoots are folders the admin API may load from and record into.
	CassetteRoots []string

	StartTimeout time.Duration // default 10 s
	StopTimeout  time.Duration // each wait of Stop: after SIGTERM, after SIGKILL; default 5 s

	// Verify, when not nil, is checked by StartT's cleanup if the test passed.
	Verify *VerifyOptions
}

// VerifyOptions say what Verify checks. The zero value asks GET /verify
// about both: required interactions and stubs never called, and requests
// that matched nothing.
type VerifyOptions struct {
	IgnoreUnmatched bool // do not fail on requests that matched no interaction or stub
	IgnoreRequired  bool // do not fail on required interactions and stubs never called
	AllPlayed       bool // fail on interactions never played since the last (re)load
}

// Error is a mock that did not start, or did not stop cleanly; Stderr is its log.
type Error struct {
	Message string
	Stderr  string
}

func (e *Error) Error() string {
	if e.Stderr == "" {
		return e.Message
	}
	return e.Message + "\n--- tchannel-mock stderr ---\n" + e.Stderr
}

// VerifyError lists what Verify found.
type VerifyError struct {
	Problems []string
}

func (e *VerifyError) Error() string {
	return "tchannel-mock verification failed:\n  " + strings.Join(e.Problems, "\n  ")
}

// Mock is a running tchannel-mock.
type Mock struct {
	Pid         int
	Binary      Binary
	HostPort    string // TChannel address, HOST:PORT
	Host        string
	Port        int
	AdminAddr   string // HOST:PORT of the admin API
	AdminURL    string // http://HOST:PORT
	Admin       *Admin
	StopTimeout time.Duration
	verify      *VerifyOptions
	cmd         *exec.Cmd
	stdin       io.WriteCloser
	stderr      *tailBuffer
	done        chan struct{} // closed once the process was reaped
	waitErr     error
	tokenDir    string
	stopOnce    sync.Once
	stopErr     error
}

// tailBuffer keeps the last stderrKeep bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > stderrKeep {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-stderrKeep:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// lineWatcher reads stdout and reports the listening and admin lines once.
type lineWatcher struct {
	mu        sync.Mutex
	partial   []byte
	seen      []string
	listening string
	admin     string
	ready     chan struct{}
}

var (
	listeningRE = regexp.MustCompile(`^listening (\S+)$`)
	adminRE     = regexp.MustCompile(`^admin (\S+)$`)
)

func (w *lineWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.listening != "" && w.admin != "" {
		return len(p), nil
	}
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		line := string(w.partial[:i])
		w.partial = w.partial[i+1:]
		// before the two lines, only a bounded tail is kept for the error
		if len(w.seen) >= seenKeep {
			w.seen = append(w.seen[:0], w.seen[1:]...)
		}
		w.seen = append(w.seen, line)
		if m := listeningRE.FindStringSubmatch(line); m != nil {
			w.listening = m[1]
		} else if m := adminRE.FindStringSubmatch(line); m != nil {
			w.admin = m[1]
		}
		if w.listening != "" && w.admin != "" {
			close(w.ready)
			break
		}
	}
	if len(w.partial) > partialKeep { // a line that never ends
		w.partial = append([]byte(nil), w.partial[len(w.partial)-partialKeep:]...)
	}
	return len(p), nil
}

func (w *lineWatcher) soFar() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(append(append([]string(nil), w.seen...), string(w.partial)), "\n")
}

// positional keeps a path that starts with '-' from being read as an option.
func positional(p string) string {
	if strings.HasPrefix(p, "-") {
		return "./" + p
	}
	return p
}

func buildArgs(o Options, f features, tokenFile string) []string {
	host := o.Host
	if host == "" {
		host = "127.0.0.1"
	}
	args := []string{"--host", host, "--port", "0", "--admin-port", "0"}
	if o.Mode != "" {
		args = append(args, "--mode", o.Mode)
	}
	for _, u := range o.Upstreams {
		args = append(args, "--upstream", u)
	}
	if o.RecordTo != "" {
		args = append(args, "--record-to", o.RecordTo)
	}
	if o.AllowRepeats {
		args = append(args, "--allow-repeats")
	}
	if len(o.Match) > 0 {
		args = append(args, "--match", strings.Join(o.Match, ","))
	}
	if f.exitOnStdinEOF {
		args = append(args, "--exit-on-stdin-eof")
	}
	if tokenFile != "" {
		args = append(args, "--admin-token-file", tokenFile)
	}
	for _, d := range o.CassetteRoots {
		args = append(args, "--cassette-root", d)
	}
	args = append(args, o.Args...)
	for _, c := range o.Cassettes {
		args = append(args, positional(c))
	}
	return args
}

func writeToken(token string) (dir, file string, err error) {
	dir, err = os.MkdirTemp("", "tchannel-mock-token-")
	if err != nil {
		return "", "", err
	}
	file = filepath.Join(dir, "token")
	if err = os.WriteFile(file, []byte(token), 0o600); err != nil {
		os.RemoveAll(dir)
		return "", "", err
	}
	return dir, file, nil
}

// Start runs tchannel-mock and returns once it printed its listening and
// admin lines, or an *Error holding its stderr when it could not start.
// ctx bounds the start-up only; call Stop to end the mock.
func Start(ctx context.Context, o Options) (*Mock, error) {
	bin, err := FindBinary(o.Bin, nil)
	if err != nil {
		return nil, err
	}
	feats, err := featuresOf(bin.Path)
	if err != nil {
		return nil, err
	}
	m := &Mock{Binary: bin, StopTimeout: o.StopTimeout, verify: o.Verify,
		stderr: &tailBuffer{}, done: make(chan struct{})}
	if m.StopTimeout <= 0 {
		m.StopTimeout = 5 * time.Second
	}
	if len(o.CassetteRoots) > 0 && !feats.cassetteRoot {
		return nil, &Error{Message: "CassetteRoots: " + bin.Path +
			" has no --cassette-root option (see its --help)"}
	}
	tokenFile := ""
	if o.AdminToken != "" {
		if !feats.adminTokenFile {
			return nil, &Error{Message: "AdminToken: " + bin.Path +
				" has no --admin-token-file option (see its --help)"}
		}
		if m.tokenDir, tokenFile, err = writeToken(o.AdminToken); err != nil {
			return nil, err
		}
	}
	args := buildArgs(o, feats, tokenFile)
	watcher := &lineWatcher{ready: make(chan struct{})}
	m.cmd = exec.Command(bin.Path, args...)
	m.cmd.Env, m.cmd.Dir = o.Env, o.Dir
	m.cmd.Stdout, m.cmd.Stderr = watcher, m.stderr
	setParentDeath(m.cmd)
	// stdin is a pipe only this process holds: it closes when we die
	if m.stdin, err = m.cmd.StdinPipe(); err != nil {
		m.removeToken()
		return nil, err
	}
	if err := m.spawn(); err != nil {
		m.removeToken()
		return nil, &Error{Message: "cannot run " + bin.Path + ": " + err.Error()}
	}
	m.Pid = m.cmd.Process.Pid
	if err := m.awaitReady(ctx, o.StartTimeout, watcher, args); err != nil {
		return nil, err
	}
	m.HostPort, m.AdminAddr = watcher.listening, watcher.admin
	host, port, err := net.SplitHostPort(m.HostPort)
	if err == nil {
		m.Host = host
		m.Port, err = strconv.Atoi(port)
	}
	if err != nil {
		m.kill()
		return nil, &Error{Message: "tchannel-mock printed a listening address that is not " +
			"HOST:PORT: " + m.HostPort, Stderr: m.stderr.String()}
	}
	m.AdminURL = "http://" + m.AdminAddr
	m.Admin = NewAdmin(m.AdminURL, o.AdminToken)
	return m, nil
}

// spawn starts the child from a goroutine that keeps its OS thread until the
// child is reaped: the parent-death signal follows the thread that forked.
func (m *Mock) spawn() error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := m.cmd.Start(); err != nil {
			started <- err
			return // a locked thread ends with its goroutine; nothing depends on it
		}
		started <- nil
		m.waitErr = m.cmd.Wait() // Wait also finishes copying stdout and stderr
		close(m.done)
	}()
	return <-started
}

func (m *Mock) awaitReady(ctx context.Context, timeout time.Duration, w *lineWatcher,
	args []string) error {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var why string
	select {
	case <-w.ready:
		return nil
	case <-m.done:
		why = "exited during start-up (" + m.cmd.ProcessState.String() + ")"
	case <-timer.C:
		why = fmt.Sprintf("did not print its listening and admin lines within %v", timeout)
	case <-ctx.Done():
		why = "start-up cancelled: " + ctx.Err().Error()
	}
	m.kill()
	return &Error{
		Message: fmt.Sprintf("tchannel-mock %s\ncommand: %s %s\nstdout so far: %q", why,
			m.Binary.Path, strings.Join(args, " "), w.soFar()),
		Stderr: m.stderr.String(),
	}
}

// kill ends the child at once and waits (bounded) for it.
func (m *Mock) kill() {
	m.cmd.Process.Kill()
	select {
	case <-m.done:
	case <-time.After(m.StopTimeout):
	}
	m.stdin.Close()
	m.removeToken()
}

func (m *Mock) removeToken() {
	if m.tokenDir != "" {
		os.RemoveAll(m.tokenDir)
		m.tokenDir = ""
	}
}

// Stderr is what the mock wrote to stderr so far (the last 64 KiB).
func (m *Mock) Stderr() string {
	return m.stderr.String()
}

// Stop sends SIGTERM, waits up to StopTimeout, then SIGKILLs. It returns an
// *Error when the mock had to be killed or exited non-zero (a cassette it
// could not save, for one). Calling it again returns the same result.
func (m *Mock) Stop() error {
	m.stopOnce.Do(func() { m.stopErr = m.stop() })
	return m.stopErr
}

func (m *Mock) stop() error {
	running := true
	select {
	case <-m.done:
		running = false
	default:
		m.cmd.Process.Signal(syscall.SIGTERM)
	}
	killed := false
	if running {
		select {
		case <-m.done:
		case <-time.After(m.StopTimeout):
			killed = true
			m.cmd.Process.Kill()
			select {
			case <-m.done:
			case <-time.After(m.StopTimeout):
			}
		}
	}
	m.stdin.Close()
	m.removeToken()
	switch {
	case killed:
		return &Error{Message: fmt.Sprintf("tchannel-mock (pid %d) did not exit within %v of "+
			"SIGTERM and was killed", m.Pid, m.StopTimeout), Stderr: m.stderr.String()}
	case !running:
		return &Error{Message: fmt.Sprintf("tchannel-mock (pid %d) had already exited before "+
			"Stop (%v)", m.Pid, m.cmd.ProcessState), Stderr: m.stderr.String()}
	case m.waitErr != nil:
		var ee *exec.ExitError
		if !errors.As(m.waitErr, &ee) {
			return m.waitErr
		}
		return &Error{Message: fmt.Sprintf("tchannel-mock (pid %d) %v after SIGTERM", m.Pid,
			ee.ProcessState), Stderr: m.stderr.String()}
	}
	return nil
}

// Verify returns a *VerifyError listing every problem o asks about, in the
// mock's words (GET /verify): interactions and stubs marked required that
// were never called, requests that matched nothing since start or the last
// clear of the journal, and, with AllPlayed, interactions never played since
// the last load, reset, rewind or mode change.
func (m *Mock) Verify(ctx context.Context, o VerifyOptions) error {
	var problems []string
	if !o.IgnoreUnmatched || !o.IgnoreRequired {
		v, err := m.Admin.Verify(ctx)
		if err != nil {
			return err
		}
		if !o.IgnoreRequired {
			for _, n := range v.NotCalled {
				problems = append(problems, "required, never called: "+n.Describe)
			}
		}
		if !o.IgnoreUnmatched && v.Unmatched > 0 {
			problems = append(problems, fmt.Sprintf(
				"%d request(s) matched no interaction or stub", v.Unmatched))
			for _, e := range v.UnmatchedRequests {
				problems = append(problems, fmt.Sprintf("unmatched %s::%s: %s", e.Service,
					e.Endpoint, e.Message))
			}
		}
	}
	if o.AllPlayed {
		list, err := m.Admin.Cassettes(ctx)
		if err != nil {
			return err
		}
		for _, c := range list.Cassettes {
			for _, i := range c.Interactions {
				if !i.Pending && !i.Aborted && i.Plays == 0 {
					problems = append(problems, fmt.Sprintf("never played: %s #%d (line %d) %s::%s",
						c.Path, i.Index, i.Line, i.Service, i.Endpoint))
				}
			}
		}
	}
	if len(problems) > 0 {
		return &VerifyError{Problems: problems}
	}
	return nil
}
