package tchannelmock

// go test against the real binary ($TCHANNEL_MOCK_BIN, else PATH).
//
// No TChannel client for Go can be installed here (only Debian's and npm's
// registries are reachable, and neither packages one), so the calls through
// the mock are made with this project's tcurl, named by $TCURL_BIN.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var (
	root      = mustAbs("../..")
	keyvalue  = filepath.Join(root, "cassettes", "keyvalue.yaml")
	echoRaw   = filepath.Join(root, "cassettes", "echo-raw.yaml")
	idl       = filepath.Join(root, "cassettes", "keyvalue.thrift")
	ctx       = context.Background()
	helperEnv = "TCHANNEL_MOCK_GO_HELPER"
)

func mustAbs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		panic(err)
	}
	return a
}

func mockBin(t *testing.T) string {
	b, err := FindBinary("", nil)
	if err != nil {
		t.Fatal(err)
	}
	return b.Path
}

type callResult struct {
	code   int
	stdout string
	stderr string
}

// tcurl makes one call with our tcurl.
func tcurl(t *testing.T, hostPort string, args ...string) callResult {
	t.Helper()
	exe := os.Getenv("TCURL_BIN")
	if exe == "" {
		t.Fatal("set TCURL_BIN to this project's tcurl (build/tools/tcurl)")
	}
	c, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(c, exe, append([]string{"-p", hostPort, "--retry-limit", "0"},
		args...)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("tcurl: %v", err)
	}
	return callResult{cmd.ProcessState.ExitCode(), out.String(), errb.String()}
}

func wantNoErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantAdminError(t *testing.T, err error, status int, contains string) *AdminError {
	t.Helper()
	var ae *AdminError
	if !errors.As(err, &ae) {
		t.Fatalf("want an *AdminError %d, got %v", status, err)
	}
	if ae.Status != status || !strings.Contains(ae.Message, contains) {
		t.Fatalf("want %d with %q, got %d %q", status, contains, ae.Status, ae.Message)
	}
	return ae
}

// waitGone waits, bounded, for a process that is not our child to be gone (a
// zombie counts: its parent is no longer there to reap it).
func waitGone(pid int, bound time.Duration) bool {
	deadline := time.Now().Add(bound)
	for {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		s := string(stat)
		if f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]); len(f) > 0 && f[0] == "Z" {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestReplaysAllThreeSchemes(t *testing.T) {
	m := StartT(t, Options{Cassettes: []string{keyvalue}, Verify: &VerifyOptions{}})
	if m.Binary.Path != mockBin(t) || m.Host != "127.0.0.1" ||
		m.HostPort != fmt.Sprintf("127.0.0.1:%d", m.Port) ||
		!strings.HasPrefix(m.AdminURL, "http://127.0.0.1:") {
		t.Fatalf("unexpected addresses: %+v", m)
	}
	if r := tcurl(t, m.HostPort, "keyvalue-server", "echo", "hello"); r.code != 0 ||
		r.stdout != "hello" {
		t.Fatalf("raw echo: %+v", r)
	}
	if r := tcurl(t, m.HostPort, "--json", "keyvalue-server", "json_echo",
		`{"key":"foo","value":"bar"}`); r.code != 0 || !strings.Contains(r.stdout, `"value": "bar"`) {
		t.Fatalf("json_echo: %+v", r)
	}
	if r := tcurl(t, m.HostPort, "--thrift", idl, "keyvalue-server", "KeyValue::getValue",
		`{"key":"foo"}`); r.code != 0 || !strings.Contains(r.stdout, `"body": "bar"`) {
		t.Fatalf("getValue: %+v", r)
	}
	n, err := m.Admin.Count(ctx, JournalQuery{Outcome: "replayed"})
	wantNoErr(t, err)
	echo, err := m.Admin.Count(ctx, JournalQuery{Service: "keyvalue-server", Endpoint: "echo"})
	wantNoErr(t, err)
	j, err := m.Admin.Journal(ctx, JournalQuery{Limit: 1})
	wantNoErr(t, err)
	if n != 3 || echo != 1 || j.Matching != 3 || len(j.Entries) != 1 ||
		j.Entries[0].Endpoint != "KeyValue::getValue" || !j.Entries[0].Matched ||
		j.Entries[0].Index == nil {
		t.Fatalf("counts %d %d, journal %+v", n, echo, j)
	}
	h, err := m.Admin.Health(ctx)
	wantNoErr(t, err)
	if h.Listening != m.HostPort || h.Calls != 3 || h.Misses != 0 {
		t.Fatalf("health %+v", h)
	}
}

func TestUnmatchedRequestFailsVerify(t *testing.T) {
	m := StartT(t, Options{Cassettes: []string{echoRaw}})
	if r := tcurl(t, m.HostPort, "keyvalue-server", "echo", "hello?"); r.code == 0 ||
		!strings.Contains(r.stderr, "badRequest") {
		t.Fatalf("want a BadRequest, got %+v", r)
	}
	un, err := m.Admin.Unmatched(ctx)
	wantNoErr(t, err)
	if len(un) != 1 || un[0].Outcome != "unmatched" || !strings.Contains(un[0].Message, "nearest #0") ||
		!strings.Contains(string(un[0].NearMiss), `"field": "body"`) {
		t.Fatalf("unmatched %+v", un)
	}
	err = m.Verify(ctx, VerifyOptions{})
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Problems[0] != "1 request(s) matched no interaction or stub" ||
		!strings.HasPrefix(ve.Problems[1], "unmatched keyvalue-server::echo: ") {
		t.Fatalf("want a VerifyError, got %v", err)
	}
	wantNoErr(t, m.Verify(ctx, VerifyOptions{IgnoreUnmatched: true}))
	_, err = m.Admin.Reset(ctx) // clears the journal and the counters
	wantNoErr(t, err)
	wantNoErr(t, m.Verify(ctx, VerifyOptions{}))
}

// fakeTB records what StartT's cleanup reports.
type fakeTB struct {
	testing.TB
	errs     []string
	cleanups []func()
}

func (f *fakeTB) Helper()                   {}
func (f *fakeTB) Cleanup(fn func())         { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) Failed() bool              { return len(f.errs) > 0 }
func (f *fakeTB) Error(args ...interface{}) { f.errs = append(f.errs, fmt.Sprint(args...)) }
func (f *fakeTB) Fatal(args ...interface{}) { panic(fmt.Sprint(args...)) }

func TestStartTVerifiesAndStopsInCleanup(t *testing.T) {
	tb := &fakeTB{TB: t}
	m := StartT(tb, Options{Cassettes: []string{echoRaw}, Verify: &VerifyOptions{AllPlayed: true}})
	if r := tcurl(t, m.HostPort, "keyvalue-server", "echo", "nope"); r.code == 0 {
		t.Fatalf("want a miss, got %+v", r)
	}
	if len(tb.cleanups) != 1 {
		t.Fatalf("want one cleanup, got %d", len(tb.cleanups))
	}
	tb.cleanups[0]()
	if len(tb.errs) != 1 || !strings.Contains(tb.errs[0], "1 request(s) matched no interaction") ||
		!strings.Contains(tb.errs[0], "never played: "+echoRaw+" #0") {
		t.Fatalf("cleanup reported %q", tb.errs)
	}
	select {
	case <-m.done:
	default:
		t.Fatal("cleanup did not stop the mock")
	}
	if m.cmd.ProcessState.ExitCode() != 0 {
		t.Fatalf("mock exited %v", m.cmd.ProcessState)
	}
}

func TestAdminAPI(t *testing.T) {
	dir := t.TempDir()
	f, err := featuresOf(mockBin(t))
	wantNoErr(t, err)
	var roots []string // the admin API may load from dir (--cassette-root limits it)
	if f.cassetteRoot {
		roots = []string{dir}
	}
	m := StartT(t, Options{Cassettes: []string{echoRaw}, CassetteRoots: roots})
	mode, err := m.Admin.Mode(ctx)
	if err != nil || mode != "none" {
		t.Fatalf("mode %q %v", mode, err)
	}
	// the wording may change; what to give it (--upstream) is named
	wantAdminError(t, m.Admin.SetMode(ctx, "once"), 400, "--upstream")
	if err := m.Admin.SetMode(ctx, "sometimes"); err == nil || !strings.Contains(err.Error(), "mode must be") {
		t.Fatalf("SetMode(sometimes): %v", err)
	}
	if _, err := m.Admin.Journal(ctx, JournalQuery{Outcome: "lost"}); err == nil {
		t.Fatal("Journal(outcome lost) passed")
	}
	ae := wantAdminError(t, m.Admin.UnloadCassette(ctx, keyvalue), 404, "")
	if ae.Method != "DELETE" {
		t.Fatalf("method %q", ae.Method)
	}
	_, err = m.Admin.LoadCassette(ctx, filepath.Join(dir, "none.yaml"), false)
	wantAdminError(t, err, 404, "no such file")
	loaded, err := m.Admin.LoadCassette(ctx, keyvalue, false)
	wantNoErr(t, err)
	if len(loaded) != 1 || loaded[0].Path != keyvalue ||
		loaded[0].Interactions[0].Endpoint != "KeyValue::getValue" {
		t.Fatalf("loaded %+v", loaded)
	}
	_, err = m.Admin.LoadCassette(ctx, keyvalue, false)
	wantAdminError(t, err, 409, "")
	fresh, err := m.Admin.LoadCassette(ctx, filepath.Join(dir, "new.yaml"), true)
	wantNoErr(t, err)
	if !fresh[0].RecordTarget {
		t.Fatalf("not the record target: %+v", fresh)
	}
	list, err := m.Admin.Cassettes(ctx)
	wantNoErr(t, err)
	var paths []string
	for _, c := range list.Cassettes {
		paths = append(paths, c.Path)
	}
	if strings.Join(paths, " ") != echoRaw+" "+keyvalue+" "+filepath.Join(dir, "new.yaml") {
		t.Fatalf("cassettes %q", paths)
	}
	wantNoErr(t, m.Admin.UnloadCassette(ctx, keyvalue))

	if r := tcurl(t, m.HostPort, "keyvalue-server", "echo", "hello"); r.stdout != "hello" {
		t.Fatalf("first play: %+v", r)
	}
	if r := tcurl(t, m.HostPort, "keyvalue-server", "echo", "hello"); r.code == 0 ||
		!strings.Contains(r.stderr, "already played") {
		t.Fatalf("second play: %+v", r)
	}
	n, err := m.Admin.Rewind(ctx)
	if err != nil || n != 2 {
		t.Fatalf("rewind %d %v", n, err)
	}
	if r := tcurl(t, m.HostPort, "keyvalue-server", "echo", "hello"); r.stdout != "hello" {
		t.Fatalf("after rewind: %+v", r)
	}
	res, err := m.Admin.Reload(ctx)
	wantNoErr(t, err)
	for _, r := range res {
		if !r.OK {
			t.Fatalf("reload %+v", r)
		}
	}
	hb, err := m.Admin.Hyperbahn(ctx)
	wantNoErr(t, err)
	if _, ok := hb["advertiseTo"].([]interface{}); !ok {
		t.Fatalf("hyperbahn %v", hb)
	}

	broken := filepath.Join(dir, "broken.yaml")
	wantNoErr(t, os.WriteFile(broken, []byte("version: 1\ninteractions: []\n"), 0o644))
	_, err = m.Admin.LoadCassette(ctx, broken, false)
	wantNoErr(t, err)
	wantNoErr(t, os.WriteFile(broken, []byte("interactions: [\n"), 0o644))
	_, err = m.Admin.Reload(ctx)
	if ae := wantAdminError(t, err, 409, ""); !strings.HasPrefix(ae.Message, broken) {
		t.Fatalf("reload error %q", ae.Message)
	}
}

func TestRecordsThroughThenReplays(t *testing.T) {
	rec := filepath.Join(t.TempDir(), "rec.yaml")
	upstream := StartT(t, Options{Cassettes: []string{echoRaw}})
	m, err := Start(ctx, Options{Mode: "new_episodes", Upstreams: []string{upstream.HostPort},
		RecordTo: rec})
	wantNoErr(t, err)
	defer m.Stop()
	h, err := m.Admin.Health(ctx)
	if err != nil || !h.Recording {
		t.Fatalf("health %+v %v", h, err)
	}
	if r := tcurl(t, m.HostPort, "keyvalue-server", "echo", "hello"); r.stdout != "hello" {
		t.Fatalf("recorded call: %+v", r)
	}
	if n, err := m.Admin.Count(ctx, JournalQuery{Outcome: "recorded"}); err != nil || n != 1 {
		t.Fatalf("recorded %d %v", n, err)
	}
	wantNoErr(t, m.Stop())
	text, err := os.ReadFile(rec)
	wantNoErr(t, err)
	if !strings.Contains(string(text), "body: hello") {
		t.Fatalf("cassette:\n%s", text)
	}
	replay := StartT(t, Options{Cassettes: []string{rec}, Verify: &VerifyOptions{AllPlayed: true}})
	if r := tcurl(t, replay.HostPort, "keyvalue-server", "echo", "hello"); r.stdout != "hello" {
		t.Fatalf("replay: %+v", r)
	}
}

func TestStartFailureCarriesStderr(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	wantNoErr(t, os.WriteFile(bad, []byte("interactions:\n  - request: [\n"), 0o644))
	_, err := Start(ctx, Options{Cassettes: []string{bad}})
	var me *Error
	if !errors.As(err, &me) || !strings.Contains(me.Message, "exited during start-up (exit status 1)") ||
		!strings.Contains(me.Stderr, bad+":") {
		t.Fatalf("want an *Error with the stderr, got %v", err)
	}
	_, err = Start(ctx, Options{Cassettes: []string{echoRaw}, Args: []string{"--bogus"}})
	if err == nil || !strings.Contains(err.Error(), "unknown option --bogus") {
		t.Fatalf("want the usage error, got %v", err)
	}
}

func writeScript(t *testing.T, name, body string) string {
	p := filepath.Join(t.TempDir(), name)
	wantNoErr(t, os.WriteFile(p, []byte("#!/bin/sh\n[ \"$1\" = --help ] && exit 0\n"+body), 0o755))
	return p
}

func TestBoundedStartAndStop(t *testing.T) {
	silent := writeScript(t, "silent-mock",
		"echo 'starting, but never listening' >&2\nexec sleep 30\n")
	t0 := time.Now()
	_, err := Start(ctx, Options{Bin: silent, StartTimeout: 300 * time.Millisecond})
	var me *Error
	if !errors.As(err, &me) || !strings.Contains(me.Message, "within 300ms") ||
		!strings.Contains(me.Stderr, "never listening") {
		t.Fatalf("want a start timeout with the stderr, got %v", err)
	}
	if time.Since(t0) > 5*time.Second {
		t.Fatalf("start took %v", time.Since(t0))
	}

	deaf := writeScript(t, "deaf-mock", "trap '' TERM\necho 'listening 127.0.0.1:1'\n"+
		"echo 'admin 127.0.0.1:2'\nexec sleep 30\n")
	m, err := Start(ctx, Options{Bin: deaf, StopTimeout: 300 * time.Millisecond})
	wantNoErr(t, err)
	err = m.Stop()
	if err == nil || !strings.Contains(err.Error(), "did not exit within 300ms of SIGTERM and was killed") {
		t.Fatalf("want a kill, got %v", err)
	}
	if ws := m.cmd.ProcessState.Sys().(syscall.WaitStatus); ws.Signal() != syscall.SIGKILL {
		t.Fatalf("ended by %v", m.cmd.ProcessState)
	}
}

func TestFindBinary(t *testing.T) {
	bin := mockBin(t)
	env := func(kv map[string]string) func(string) string {
		return func(k string) string { return kv[k] }
	}
	if b, err := FindBinary(bin, env(nil)); err != nil || b != (Binary{bin, "argument"}) {
		t.Fatalf("argument: %v %v", b, err)
	}
	if b, err := FindBinary("", env(map[string]string{EnvVar: bin})); err != nil ||
		b != (Binary{bin, EnvVar}) {
		t.Fatalf("env: %v %v", b, err)
	}
	if b, err := FindBinary("", env(map[string]string{"PATH": filepath.Dir(bin)})); err != nil ||
		b != (Binary{bin, "PATH"}) {
		t.Fatalf("PATH: %v %v", b, err)
	}
	_, err := FindBinary("/nonexistent/tchannel-mock",
		env(map[string]string{EnvVar: "/also/missing", "PATH": "/nowhere"}))
	var nf *NotFoundError
	if !errors.As(err, &nf) || len(nf.Tried) != 3 ||
		!strings.Contains(err.Error(), "argument: /nonexistent/tchannel-mock") ||
		!strings.Contains(err.Error(), EnvVar+"=/also/missing") ||
		!strings.Contains(err.Error(), "PATH: no tchannel-mock in /nowhere") {
		t.Fatalf("error %v", err)
	}
}

// TestHelperProcess is not a test: run with TCHANNEL_MOCK_GO_HELPER=1 it
// starts a mock, prints its pid and waits to be killed.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("helper for TestMockDoesNotOutliveAKilledTestProcess")
	}
	m, err := Start(ctx, Options{Cassettes: []string{echoRaw}})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println(m.Pid)
	time.Sleep(60 * time.Second)
	os.Exit(1)
}

func TestMockDoesNotOutliveAKilledTestProcess(t *testing.T) {
	parent := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	parent.Env = append(os.Environ(), helperEnv+"=1")
	out, err := parent.StdoutPipe()
	wantNoErr(t, err)
	wantNoErr(t, parent.Start())
	line, err := bufio.NewReader(out).ReadString('\n')
	parent.Process.Kill()
	parent.Wait()
	pid, perr := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || perr != nil {
		t.Fatalf("helper printed %q (%v %v)", line, err, perr)
	}
	if !waitGone(pid, 10*time.Second) {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("mock %d outlived its killed parent", pid)
	}
}

func TestAdminToken(t *testing.T) {
	f, err := featuresOf(mockBin(t))
	wantNoErr(t, err)
	if !f.adminTokenFile {
		t.Skip("this tchannel-mock has no --admin-token-file")
	}
	m := StartT(t, Options{Cassettes: []string{echoRaw}, AdminToken: "s3cret"})
	h, err := m.Admin.Health(ctx)
	if err != nil || h.Status != "ok" {
		t.Fatalf("with the token: %+v %v", h, err)
	}
	_, err = NewAdmin(m.AdminURL, "").Health(ctx)
	wantAdminError(t, err, 401, "Bearer")
	_, err = NewAdmin(m.AdminURL, "guess").Health(ctx)
	wantAdminError(t, err, 401, "")
}

func wantOut(t *testing.T, r callResult, want string) {
	t.Helper()
	if r.code != 0 || r.stdout != want {
		t.Fatalf("want %q, got %+v", want, r)
	}
}

func TestStubsScenariosAndSaving(t *testing.T) {
	dir := t.TempDir()
	m := StartT(t, Options{Cassettes: []string{echoRaw}, CassetteRoots: []string{dir}})
	a := m.Admin
	ping, err := a.AddStub(ctx, Stub{ID: "ping", Request: map[string]interface{}{
		"serviceName": "keyvalue-server", "endpoint": "ping",
		"body": map[string]interface{}{"matches": "^ping-[0-9]+$"}},
		Response: map[string]interface{}{"body": "pong"}})
	wantNoErr(t, err)
	if ping.ID != "ping" || ping.Plays != 0 || ping.Request["endpoint"] != "ping" {
		t.Fatalf("added %+v", ping)
	}
	named, err := a.AddStub(ctx, json.RawMessage(`{"request": {"serviceName":
		"keyvalue-server", "endpoint": "x"}, "response": {"body": "x"}}`))
	wantNoErr(t, err)
	if named.ID == "" || named.ID == "ping" {
		t.Fatalf("the mock named a stub %q", named.ID)
	}
	wantOut(t, tcurl(t, m.HostPort, "keyvalue-server", "ping", "ping-42"), "pong")
	wantOut(t, tcurl(t, m.HostPort, "keyvalue-server", "ping", "ping-43"), "pong")
	got, err := a.Stub(ctx, "ping")
	wantNoErr(t, err)
	if got.Plays != 2 {
		t.Fatalf("plays %d", got.Plays)
	}
	list, err := a.Stubs(ctx)
	wantNoErr(t, err)
	if len(list) != 2 || list[0].ID != "ping" || list[1].ID != named.ID {
		t.Fatalf("stubs %+v", list)
	}
	changed, err := a.ReplaceStub(ctx, "ping", map[string]interface{}{"id": "ping",
		"request":  map[string]string{"serviceName": "keyvalue-server", "endpoint": "ping"},
		"response": map[string]string{"body": "PONG"}})
	wantNoErr(t, err)
	if changed.Response["body"] != "PONG" {
		t.Fatalf("replaced %+v", changed)
	}
	wantOut(t, tcurl(t, m.HostPort, "keyvalue-server", "ping", "anything"), "PONG")
	_, err = a.Stub(ctx, "nope")
	wantAdminError(t, err, 404, "nope")
	_, err = a.AddStub(ctx, json.RawMessage(`{"request": {"endpoint": {"matches": "("}},
		"response": {"body": "x"}}`))
	wantAdminError(t, err, 400, "endpoint.matches")
	if _, err := a.Stub(ctx, ""); err == nil {
		t.Fatal("Stub(\"\") passed")
	}

	// scenarios: a stub answers only in its state, and moves it
	cart := map[string]interface{}{"serviceName": "keyvalue-server", "endpoint": "cart"}
	_, err = a.AddStub(ctx, Stub{ID: "empty", Scenario: "cart", RequiredState: "Started",
		NewState: "full", Request: cart, Response: map[string]interface{}{"body": "empty"}})
	wantNoErr(t, err)
	_, err = a.AddStub(ctx, Stub{ID: "full", Scenario: "cart", RequiredState: "full",
		Request: cart, Response: map[string]interface{}{"body": "one item"}})
	wantNoErr(t, err)
	wantOut(t, tcurl(t, m.HostPort, "keyvalue-server", "cart"), "empty")
	scs, err := a.Scenarios(ctx)
	wantNoErr(t, err)
	if len(scs) != 1 || scs[0].Name != "cart" || scs[0].State != "full" ||
		!strings.Contains(strings.Join(scs[0].PossibleStates, ","), "Started") {
		t.Fatalf("scenarios %+v", scs)
	}
	wantOut(t, tcurl(t, m.HostPort, "keyvalue-server", "cart"), "one item")
	wantNoErr(t, a.SetScenarioState(ctx, "cart", "Started"))
	wantOut(t, tcurl(t, m.HostPort, "keyvalue-server", "cart"), "empty")
	wantNoErr(t, a.ResetScenarios(ctx))
	scs, err = a.Scenarios(ctx)
	wantNoErr(t, err)
	if scs[0].State != "Started" {
		t.Fatalf("after reset %+v", scs)
	}
	wantAdminError(t, a.SetScenarioState(ctx, "cart", "ful"), 400, "'full'")
	wantAdminError(t, a.SetScenarioState(ctx, "no such", "Started"), 404, "")

	// saved as a cassette another mock serves
	out := filepath.Join(dir, "stubs.yaml")
	n, err := a.SaveStubs(ctx, out, false)
	wantNoErr(t, err)
	if n != 4 {
		t.Fatalf("saved %d", n)
	}
	_, err = a.SaveStubs(ctx, out, false)
	wantAdminError(t, err, 409, "overwrite")
	_, err = a.SaveStubs(ctx, out, true)
	wantNoErr(t, err)
	wantNoErr(t, a.DeleteStub(ctx, named.ID))
	n, err = a.DeleteStubs(ctx)
	wantNoErr(t, err)
	if list, _ = a.Stubs(ctx); n != 3 || len(list) != 0 {
		t.Fatalf("deleted %d, left %+v", n, list)
	}
	other := StartT(t, Options{Cassettes: []string{out}})
	wantOut(t, tcurl(t, other.HostPort, "keyvalue-server", "ping", "x"), "PONG")
}

func TestJournalRulesAndVerify(t *testing.T) {
	m := StartT(t, Options{Cassettes: []string{keyvalue}, Args: []string{"--thrift", idl}})
	a := m.Admin
	_, err := a.AddStub(ctx, Stub{ID: "must", Required: true, Request: map[string]interface{}{
		"serviceName": "keyvalue-server", "endpoint": "must"},
		Response: map[string]interface{}{"body": "done"}})
	wantNoErr(t, err)
	if r := tcurl(t, m.HostPort, "-t", idl, "keyvalue-server", "KeyValue::getValue",
		`{"key": "foo"}`); r.code != 0 {
		t.Fatalf("getValue %+v", r)
	}
	if r := tcurl(t, m.HostPort, "keyvalue-server", "nothing-here"); r.code == 0 {
		t.Fatalf("want a miss, got %+v", r)
	}
	rules := map[string]interface{}{"endpoint": "KeyValue::getValue",
		"body": map[string]interface{}{"matchesJsonPath": map[string]string{
			"expression": "$.key", "equalTo": "foo"}}}
	n, err := a.CountRequests(ctx, rules)
	wantNoErr(t, err)
	found, err := a.FindRequests(ctx, rules)
	wantNoErr(t, err)
	var body struct{ Key string }
	if n != 1 || len(found) != 1 || found[0].Outcome != "replayed" ||
		json.Unmarshal(found[0].BodyDecoded, &body) != nil || body.Key != "foo" {
		t.Fatalf("count %d, found %+v", n, found)
	}
	if n, err = a.CountRequests(ctx, nil); err != nil || n != 2 {
		t.Fatalf("count all %d %v", n, err)
	}
	_, err = a.CountRequests(ctx, json.RawMessage(`{"body": {"matchesJsonPath": "$.a["}}`))
	wantAdminError(t, err, 400, "body.matchesJsonPath")
	u, err := a.UnmatchedReport(ctx)
	wantNoErr(t, err)
	if u.Count != 1 || u.SinceClear != 1 || u.Entries[0].Endpoint != "nothing-here" {
		t.Fatalf("unmatched %+v", u)
	}

	v, err := a.Verify(ctx) // a 409 is a report, not an error
	wantNoErr(t, err)
	if v.OK || v.Unmatched != 1 || len(v.NotCalled) != 1 || v.NotCalled[0].ID != "must" ||
		v.UnmatchedRequests[0].Endpoint != "nothing-here" {
		t.Fatalf("verify %+v", v)
	}
	err = m.Verify(ctx, VerifyOptions{})
	var ve *VerifyError
	if !errors.As(err, &ve) || !strings.HasPrefix(ve.Problems[0], "required, never called: ") ||
		!strings.Contains(ve.Problems[0], "[must]") ||
		!strings.Contains(err.Error(), "nothing-here") {
		t.Fatalf("want a VerifyError, got %v", err)
	}
	tb := &fakeTB{TB: t}
	m.VerifyT(tb, VerifyOptions{IgnoreUnmatched: true})
	if len(tb.errs) != 1 || strings.Contains(tb.errs[0], "nothing-here") {
		t.Fatalf("VerifyT reported %q", tb.errs)
	}
	wantNoErr(t, m.Verify(ctx, VerifyOptions{IgnoreUnmatched: true, IgnoreRequired: true}))

	cleared, err := a.ClearJournal(ctx)
	wantNoErr(t, err)
	if cleared != 2 {
		t.Fatalf("cleared %d", cleared)
	}
	wantOut(t, tcurl(t, m.HostPort, "keyvalue-server", "must"), "done")
	if v, err = a.Verify(ctx); err != nil || !v.OK {
		t.Fatalf("verify %+v %v", v, err)
	}
	wantNoErr(t, m.Verify(ctx, VerifyOptions{}))
}

func TestRedactions(t *testing.T) {
	m := StartT(t, Options{Cassettes: []string{echoRaw}})
	r, err := m.Admin.Redactions(ctx)
	wantNoErr(t, err)
	if len(r.Headers)+len(r.TransportHeaders)+len(r.JSONPaths)+len(r.ThriftFields) != 0 {
		t.Fatalf("redactions %+v", r)
	}
	r, err = m.Admin.SetRedactions(ctx, Redactions{Headers: []string{"x-token"},
		JSONPaths: []string{"$.password"}})
	wantNoErr(t, err)
	if len(r.Headers) != 1 || r.JSONPaths[0] != "$.password" {
		t.Fatalf("set %+v", r)
	}
	_, err = m.Admin.SetRedactions(ctx, Redactions{JSONPaths: []string{"password"}})
	wantAdminError(t, err, 400, "jsonPaths[0]")
	if r, _ = m.Admin.Redactions(ctx); len(r.JSONPaths) != 1 {
		t.Fatalf("a refused PUT changed the set: %+v", r)
	}
	r, err = m.Admin.SetRedactions(ctx, Redactions{})
	wantNoErr(t, err)
	if len(r.Headers) != 0 || len(r.JSONPaths) != 0 {
		t.Fatalf("emptied %+v", r)
	}
}
