package tchannelmock

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Modes and Outcomes are the values the admin API knows.
var (
	Modes    = []string{"once", "new_episodes", "none", "all"}
	Outcomes = []string{"replayed", "recorded", "unmatched", "failed", "hyperbahn"}
)

// AdminError is an error status from the admin API, with the mock's message.
type AdminError struct {
	Method  string
	Path    string
	Status  int
	Message string
	Body    json.RawMessage
}

func (e *AdminError) Error() string {
	return fmt.Sprintf("tchannel-mock admin %s %s: %d %s", e.Method, e.Path, e.Status, e.Message)
}

// Health is GET /health.
type Health struct {
	Status       string `json:"status"`
	Listening    string `json:"listening"`
	Mode         string `json:"mode"`
	Cassettes    int    `json:"cassettes"`
	Interactions int    `json:"interactions"`
	LoadErrors   int    `json:"loadErrors"`
	Calls        int64  `json:"calls"`
	Misses       int64  `json:"misses"`
	UptimeMs     int64  `json:"uptimeMs"`
	Recording    bool   `json:"recording"`
}

// Interaction is one recorded interaction of a loaded cassette. A recording
// in flight has only Index and Pending; one that never reached the upstream,
// Index and Aborted.
type Interaction struct {
	Index    int    `json:"index"`
	Line     int    `json:"line"`
	Service  string `json:"service"`
	Endpoint string `json:"endpoint"`
	Scheme   string `json:"scheme"`
	Plays    int    `json:"plays"`
	Error    string `json:"error,omitempty"`
	DelayMs  int    `json:"delayMs,omitempty"`
	Fault    string `json:"fault,omitempty"`
	Pending  bool   `json:"pending,omitempty"`
	Aborted  bool   `json:"aborted,omitempty"`
}

// Cassette is one loaded cassette.
type Cassette struct {
	Path              string        `json:"path"`
	Mode              string        `json:"mode"`
	RecordTarget      bool          `json:"recordTarget"`
	CanRecord         bool          `json:"canRecord"`
	LoadedAtMs        int64         `json:"loadedAtMs"`
	Reloads           int           `json:"reloads"`
	Plays             int           `json:"plays"`
	PendingRecordings int           `json:"pendingRecordings"`
	LoadError         *string       `json:"loadError"`
	Interactions      []Interaction `json:"interactions"`
}

// CassetteList is GET /cassettes.
type CassetteList struct {
	Mode      string     `json:"mode"`
	Cassettes []Cassette `json:"cassettes"`
}

// JournalEntry is one request the mock received. Index is nil when no
// interaction answered it; NearMiss is the nearest interaction, as JSON.
type JournalEntry struct {
	Seq      int64  `json:"seq"`
	TimeMs   int64  `json:"timeMs"`
	Service  string `json:"service"`
	Endpoint string `json:"endpoint"`
	Scheme   string `json:"scheme"`
	Peer     string `json:"peer"`
	Outcome  string `json:"outcome"`
	Matched  bool   `json:"matched"`
	Cassette string `json:"cassette,omitempty"`
	Index    *int   `json:"index,omitempty"`
	StubID   string `json:"stubId,omitempty"`
	Message  string `json:"message,omitempty"`
	// BodyDecoded is a json or thrift call's body as JSON (nil for raw)
	BodyDecoded json.RawMessage `json:"bodyDecoded,omitempty"`
	NearMiss    json.RawMessage `json:"nearMiss,omitempty"`
}

// Journal is GET /journal: Matching counts the entries that passed the
// filters before the limit.
type Journal struct {
	Capacity int64          `json:"capacity"`
	Total    int64          `json:"total"`
	Dropped  int64          `json:"dropped"`
	Matching int64          `json:"matching"`
	Entries  []JournalEntry `json:"entries"`
}

// JournalQuery filters the journal; empty fields do not filter, Limit 0
// keeps every entry.
type JournalQuery struct {
	Service  string
	Endpoint string
	Outcome  string
	Limit    int
}

// ReloadResult is one cassette's result in POST /reload or /reset.
type ReloadResult struct {
	Path  string  `json:"path"`
	OK    bool    `json:"ok"`
	Error *string `json:"error"`
}

// Admin talks to the admin API at URL (http://HOST:PORT).
type Admin struct {
	URL   string
	Token string // sent as Authorization: Bearer TOKEN when set
	HTTP  *http.Client
}

// NewAdmin makes a client with a 10 s bound per request and no proxy.
func NewAdmin(adminURL, token string) *Admin {
	return &Admin{
		URL:   strings.TrimRight(adminURL, "/"),
		Token: token,
		HTTP: &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
		},
	}
}

// message is the mock's own words: {"error": ...}, or the files a reload
// could not read.
func message(body []byte) string {
	var e struct {
		Error    *string        `json:"error"`
		Reloaded []ReloadResult `json:"reloaded"`
	}
	if json.Unmarshal(body, &e) == nil {
		if e.Error != nil {
			return *e.Error
		}
		var failed []string
		for _, r := range e.Reloaded {
			if !r.OK && r.Error != nil {
				failed = append(failed, r.Path+": "+*r.Error)
			}
		}
		if len(failed) > 0 {
			return strings.Join(failed, "; ")
		}
	}
	if s := strings.TrimSpace(string(body)); s != "" {
		return s
	}
	return "no answer body"
}

// Do sends one request and decodes the JSON answer into out (if not nil).
func (a *Admin) Do(ctx context.Context, method, path string, in, out interface{}) error {
	return a.do(ctx, method, path, in, out, 0)
}

// do is Do where the status also (not 0) is an answer to decode, not an error.
func (a *Admin) do(ctx context.Context, method, path string, in, out interface{}, also int) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.URL+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.Token != "" {
		req.Header.Set("Authorization", "Bearer "+a.Token)
	}
	res, err := a.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("tchannel-mock admin %s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	text, err := io.ReadAll(res.Body)
	if err != nil {
		return fmt.Errorf("tchannel-mock admin %s %s: reading the answer: %w", method, path, err)
	}
	if (res.StatusCode < 200 || res.StatusCode > 299) && res.StatusCode != also {
		return &AdminError{method, path, res.StatusCode, message(text), json.RawMessage(text)}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(text, out); err != nil {
		return &AdminError{method, path, res.StatusCode,
			fmt.Sprintf("answer is not the JSON expected (%v): %.200q", err, text), text}
	}
	return nil
}

func oneOf(what, v string, allowed []string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return fmt.Errorf("%s must be one of %s, got %q", what, strings.Join(allowed, ", "), v)
}

// Health is GET /health.
func (a *Admin) Health(ctx context.Context) (Health, error) {
	var h Health
	return h, a.Do(ctx, "GET", "/health", nil, &h)
}

// Cassettes is GET /cassettes.
func (a *Admin) Cassettes(ctx context.Context) (CassetteList, error) {
	var c CassetteList
	return c, a.Do(ctx, "GET", "/cassettes", nil, &c)
}

// LoadCassette loads a file or directory; recordTarget starts a new cassette
// to record into. It returns the cassettes loaded.
func (a *Admin) LoadCassette(ctx context.Context, path string, recordTarget bool) ([]Cassette, error) {
	in := map[string]interface{}{"path": path}
	if recordTarget {
		in["recordTarget"] = true
	}
	var out struct {
		Loaded []Cassette `json:"loaded"`
	}
	return out.Loaded, a.Do(ctx, "POST", "/cassettes", in, &out)
}

// UnloadCassette saves what the cassette recorded, then unloads it.
func (a *Admin) UnloadCassette(ctx context.Context, path string) error {
	return a.Do(ctx, "DELETE", "/cassettes?"+url.Values{"path": {path}}.Encode(), nil, nil)
}

func (a *Admin) reloads(ctx context.Context, path string) ([]ReloadResult, error) {
	var out struct {
		Reloaded []ReloadResult `json:"reloaded"`
	}
	return out.Reloaded, a.Do(ctx, "POST", path, nil, &out)
}

// Reload re-reads every cassette now.
func (a *Admin) Reload(ctx context.Context) ([]ReloadResult, error) {
	return a.reloads(ctx, "/reload")
}

// Reset reloads every cassette and clears the journal and counters.
func (a *Admin) Reset(ctx context.Context) ([]ReloadResult, error) {
	return a.reloads(ctx, "/reset")
}

// Rewind sets every play count back to zero; it returns how many cassettes.
func (a *Admin) Rewind(ctx context.Context) (int, error) {
	var out struct {
		Rewound int `json:"rewound"`
	}
	return out.Rewound, a.Do(ctx, "POST", "/rewind", nil, &out)
}

// Mode is GET /mode.
func (a *Admin) Mode(ctx context.Context) (string, error) {
	var out struct {
		Mode string `json:"mode"`
	}
	return out.Mode, a.Do(ctx, "GET", "/mode", nil, &out)
}

// SetMode re-opens every cassette under mode.
func (a *Admin) SetMode(ctx context.Context, mode string) error {
	if err := oneOf("mode", mode, Modes); err != nil {
		return err
	}
	return a.Do(ctx, "PUT", "/mode", map[string]string{"mode": mode}, nil)
}

// Journal is GET /journal with q's filters.
func (a *Admin) Journal(ctx context.Context, q JournalQuery) (Journal, error) {
	var j Journal
	v := url.Values{}
	if q.Service != "" {
		v.Set("service", q.Service)
	}
	if q.Endpoint != "" {
		v.Set("endpoint", q.Endpoint)
	}
	if q.Outcome != "" {
		if err := oneOf("outcome", q.Outcome, Outcomes); err != nil {
			return j, err
		}
		v.Set("outcome", q.Outcome)
	}
	if q.Limit < 0 {
		return j, fmt.Errorf("limit must not be negative, got %d", q.Limit)
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	path := "/journal"
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	return j, a.Do(ctx, "GET", path, nil, &j)
}

// Count is how many journal entries pass q's filters (q.Limit is ignored).
func (a *Admin) Count(ctx context.Context, q JournalQuery) (int64, error) {
	q.Limit = 1
	j, err := a.Journal(ctx, q)
	return j.Matching, err
}

// Unmatched is the requests no cassette or stub answered, oldest first
// (GET /journal/unmatched).
func (a *Admin) Unmatched(ctx context.Context) ([]JournalEntry, error) {
	u, err := a.UnmatchedReport(ctx)
	return u.Entries, err
}

// Hyperbahn is GET /hyperbahn, decoded as generic JSON.
func (a *Admin) Hyperbahn(ctx context.Context) (map[string]interface{}, error) {
	var out map[string]interface{}
	return out, a.Do(ctx, "GET", "/hyperbahn", nil, &out)
}
