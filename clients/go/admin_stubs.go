package tchannelmock

import (
	"context"
	"fmt"
	"net/url"
)

// Stub is a run-time stub (docs/cassettes.md, "Stubs"). As an answer it has
// what the mock holds, Plays included; as an argument, fields left empty are
// left out. Anything else a stub can say (delayDistribution, fault, ...)
// goes in through a map or a json.RawMessage instead.
type Stub struct {
	ID            string                 `json:"id,omitempty"`
	Priority      *int                   `json:"priority,omitempty"`
	Required      bool                   `json:"required,omitempty"`
	Scenario      string                 `json:"scenario,omitempty"`
	RequiredState string                 `json:"requiredState,omitempty"`
	NewState      string                 `json:"newState,omitempty"`
	Request       map[string]interface{} `json:"request"`
	Response      map[string]interface{} `json:"response,omitempty"`
	Error         map[string]interface{} `json:"error,omitempty"`
	Plays         int                    `json:"plays,omitempty"`
}

// Scenario is one scenario of GET /scenarios, of the stubs and the cassettes.
type Scenario struct {
	Name           string   `json:"name"`
	State          string   `json:"state"`
	PossibleStates []string `json:"possibleStates"`
}

// NotCalled is an interaction or stub marked required that was never called.
type NotCalled struct {
	Cassette string `json:"cassette"`
	Index    int    `json:"index"`
	ID       string `json:"id,omitempty"`
	Line     int    `json:"line"`
	Service  string `json:"service"`
	Endpoint string `json:"endpoint"`
	Describe string `json:"describe"`
}

// VerifyReport is GET /verify: OK when every required interaction and stub
// was called and no request went unmatched since the last clear.
// UnmatchedRequests are the newest misses.
type VerifyReport struct {
	OK                bool           `json:"ok"`
	NotCalled         []NotCalled    `json:"notCalled"`
	Unmatched         int64          `json:"unmatched"`
	UnmatchedRequests []JournalEntry `json:"unmatchedRequests"`
}

// UnmatchedReport is GET /journal/unmatched: SinceClear also counts the
// misses the journal has let go.
type UnmatchedReport struct {
	Count      int64          `json:"count"`
	SinceClear int64          `json:"unmatchedSinceClear"`
	Entries    []JournalEntry `json:"entries"`
}

// Redactions is what recordings must not keep; PUT replaces the whole set.
type Redactions struct {
	Headers          []string `json:"headers"`
	TransportHeaders []string `json:"transportHeaders"`
	JSONPaths        []string `json:"jsonPaths"`
	ThriftFields     []string `json:"thriftFields"`
}

func segment(what, v string) (string, error) {
	if v == "" {
		return "", fmt.Errorf("%s must not be empty", what)
	}
	return url.PathEscape(v), nil
}

// rules is the match rules of a journal query: nil means every request.
func rules(r interface{}) interface{} {
	if r == nil {
		return map[string]interface{}{}
	}
	return r
}

// AddStub adds a stub: a Stub, a map, or a json.RawMessage. Without an id
// the mock names it; the answer is the stub as the mock holds it.
func (a *Admin) AddStub(ctx context.Context, stub interface{}) (Stub, error) {
	var out struct {
		Stub Stub `json:"stub"`
	}
	return out.Stub, a.Do(ctx, "POST", "/stubs", stub, &out)
}

// Stubs lists the run-time stubs.
func (a *Admin) Stubs(ctx context.Context) ([]Stub, error) {
	var out struct {
		Stubs []Stub `json:"stubs"`
	}
	return out.Stubs, a.Do(ctx, "GET", "/stubs", nil, &out)
}

// Stub is GET /stubs/ID.
func (a *Admin) Stub(ctx context.Context, id string) (Stub, error) {
	var s Stub
	seg, err := segment("stub id", id)
	if err != nil {
		return s, err
	}
	return s, a.Do(ctx, "GET", "/stubs/"+seg, nil, &s)
}

// ReplaceStub replaces the stub with this id (PUT /stubs/ID).
func (a *Admin) ReplaceStub(ctx context.Context, id string, stub interface{}) (Stub, error) {
	var out struct {
		Stub Stub `json:"stub"`
	}
	seg, err := segment("stub id", id)
	if err != nil {
		return out.Stub, err
	}
	return out.Stub, a.Do(ctx, "PUT", "/stubs/"+seg, stub, &out)
}

// DeleteStub drops one stub.
func (a *Admin) DeleteStub(ctx context.Context, id string) error {
	seg, err := segment("stub id", id)
	if err != nil {
		return err
	}
	return a.Do(ctx, "DELETE", "/stubs/"+seg, nil, nil)
}

// DeleteStubs drops every run-time stub (and their scenarios' states) and
// returns how many there were.
func (a *Admin) DeleteStubs(ctx context.Context) (int, error) {
	var out struct {
		Deleted int `json:"deleted"`
	}
	return out.Deleted, a.Do(ctx, "DELETE", "/stubs", nil, &out)
}

// SaveStubs writes the run-time stubs as a cassette at path (inside the
// cassette roots); it returns how many it saved. An existing file is
// refused (409) unless overwrite.
func (a *Admin) SaveStubs(ctx context.Context, path string, overwrite bool) (int, error) {
	in := map[string]interface{}{"path": path}
	if overwrite {
		in["overwrite"] = true
	}
	var out struct {
		Saved int `json:"saved"`
	}
	return out.Saved, a.Do(ctx, "POST", "/stubs/save", in, &out)
}

// Scenarios is GET /scenarios.
func (a *Admin) Scenarios(ctx context.Context) ([]Scenario, error) {
	var out struct {
		Scenarios []Scenario `json:"scenarios"`
	}
	return out.Scenarios, a.Do(ctx, "GET", "/scenarios", nil, &out)
}

// SetScenarioState moves a scenario to state: "Started", or one its stubs
// or interactions name.
func (a *Admin) SetScenarioState(ctx context.Context, name, state string) error {
	seg, err := segment("scenario name", name)
	if err != nil {
		return err
	}
	return a.Do(ctx, "PUT", "/scenarios/"+seg+"/state", map[string]string{"state": state}, nil)
}

// ResetScenarios moves every scenario back to "Started".
func (a *Admin) ResetScenarios(ctx context.Context) error {
	return a.Do(ctx, "POST", "/scenarios/reset", nil, nil)
}

// FindRequests is the journal entries the match rules pass (a stub's
// request object, as a map, a struct or a json.RawMessage; nil: all),
// oldest first.
func (a *Admin) FindRequests(ctx context.Context, r interface{}) ([]JournalEntry, error) {
	var out struct {
		Entries []JournalEntry `json:"entries"`
	}
	return out.Entries, a.Do(ctx, "POST", "/journal/find", rules(r), &out)
}

// CountRequests is how many journal entries the match rules pass.
func (a *Admin) CountRequests(ctx context.Context, r interface{}) (int64, error) {
	var out struct {
		Count int64 `json:"count"`
	}
	return out.Count, a.Do(ctx, "POST", "/journal/count", rules(r), &out)
}

// UnmatchedReport is GET /journal/unmatched.
func (a *Admin) UnmatchedReport(ctx context.Context) (UnmatchedReport, error) {
	var u UnmatchedReport
	return u, a.Do(ctx, "GET", "/journal/unmatched", nil, &u)
}

// ClearJournal empties the journal (not the cassettes) and returns how many
// entries it held.
func (a *Admin) ClearJournal(ctx context.Context) (int64, error) {
	var out struct {
		Cleared int64 `json:"cleared"`
	}
	return out.Cleared, a.Do(ctx, "DELETE", "/journal", nil, &out)
}

// Verify is GET /verify. Its 409 (something to report) is a report with
// OK false, not an error.
func (a *Admin) Verify(ctx context.Context) (VerifyReport, error) {
	var v VerifyReport
	return v, a.do(ctx, "GET", "/verify", nil, &v, 409)
}

// Redactions is GET /redactions.
func (a *Admin) Redactions(ctx context.Context) (Redactions, error) {
	var r Redactions
	return r, a.Do(ctx, "GET", "/redactions", nil, &r)
}

// SetRedactions replaces the whole set (a nil list empties it) and returns
// the set now in force.
func (a *Admin) SetRedactions(ctx context.Context, r Redactions) (Redactions, error) {
	in := Redactions{Headers: orEmpty(r.Headers), TransportHeaders: orEmpty(r.TransportHeaders),
		JSONPaths: orEmpty(r.JSONPaths), ThriftFields: orEmpty(r.ThriftFields)}
	var out Redactions
	return out, a.Do(ctx, "PUT", "/redactions", in, &out)
}

func orEmpty(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}
