package ui

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/dsfeatures/featurestore/featurestore"
	"github.com/dsfeatures/featurestore/gdpr"
)

// Bounds of the sets page: how many sets it reads from the registry, and how many rows
// it shows (with their freshness) after filtering.
const (
	maxListed   = 5000
	maxShown    = 500
	maxQueryLen = 200
)

// basePage is what the layout needs.
type basePage struct {
	Title    string
	Identity string
	AuthOn   bool
	// ShowNav: the visitor is identified, so the navigation applies.
	ShowNav    bool
	MayGdpr    bool
	LogoutCSRF string
}

func (h *Handler) base(v viewer, title string) basePage {
	b := basePage{Title: title, Identity: v.identity, AuthOn: v.authOn, ShowNav: true, MayGdpr: h.mayGdpr(v)}
	if v.session != "" {
		b.LogoutCSRF = h.sessions.logoutCSRF(v.session)
	}
	return b
}

func (h *Handler) parseTemplates() error {
	funcs := template.FuncMap{
		"ago":      func(t time.Time) string { return ago(h.clock.Now(), t) },
		"rfc3339":  func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"when":     func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
		"duration": formatTTL,
	}
	h.pages = map[string]*template.Template{}
	for _, name := range []string{"sets", "set", "lookup", "deletion", "login", "error"} {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return fmt.Errorf("ui: template %s: %w", name, err)
		}
		h.pages[name] = t
	}
	return nil
}

// render executes a page into a buffer first, so a failing template never sends half a
// page, then writes it with status.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	var buf bytes.Buffer
	if err := h.pages[name].ExecuteTemplate(&buf, "layout", data); err != nil {
		h.logger.ErrorContext(r.Context(), "ui: template failed", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

type errorData struct {
	basePage
	Status  int
	Message string
}

// renderError shows message with status; v is the viewer when known (for the navigation).
func (h *Handler) renderError(w http.ResponseWriter, r *http.Request, v *viewer, status int, message string) {
	b := basePage{Title: http.StatusText(status)}
	if v != nil {
		b = h.base(*v, http.StatusText(status))
	}
	h.render(w, r, status, "error", errorData{basePage: b, Status: status, Message: message})
}

// domainError shows a domain error: the message of a known kind (which never holds
// values or subject ids), or a generic one for the rest, which is logged.
func (h *Handler) domainError(w http.ResponseWriter, r *http.Request, v viewer, op string, err error) {
	status, msg := http.StatusInternalServerError, "Something went wrong; it has been logged."
	var fe *featurestore.Error
	switch featurestore.ErrorKind(err) {
	case featurestore.KindInvalid, featurestore.KindResourceExhausted:
		status = http.StatusBadRequest
	case featurestore.KindNotFound:
		status = http.StatusNotFound
	case featurestore.KindUnavailable, featurestore.KindAborted:
		status, msg = http.StatusServiceUnavailable, "The store is unavailable right now; try again in a moment."
	}
	if status == http.StatusBadRequest || status == http.StatusNotFound {
		if errors.As(err, &fe) {
			msg = fe.Message
			if fe.Field != "" {
				msg = fe.Field + ": " + msg
			}
		}
	} else {
		h.logger.WarnContext(r.Context(), "ui: "+op+" failed", "reason", featurestore.ErrorReason(err), "err", err)
	}
	h.renderError(w, r, &v, status, msg)
}

// readableSets lists the registry (up to maxListed sets) and keeps those v may read,
// sorted by name.
func (h *Handler) readableSets(r *http.Request, v viewer) ([]featurestore.FeatureSet, bool, error) {
	var out []featurestore.FeatureSet
	token, seen := "", 0
	for {
		page, next, err := h.features.ListFeatureSets(r.Context(), token, featurestore.MaxPageSize)
		if err != nil {
			return nil, false, err
		}
		for _, fs := range page {
			if h.mayRead(v, fs.Name) {
				out = append(out, fs)
			}
		}
		seen += len(page)
		if next == "" {
			break
		}
		if seen >= maxListed {
			slices.SortFunc(out, func(a, b featurestore.FeatureSet) int { return strings.Compare(a.Name, b.Name) })
			return out, true, nil
		}
		token = next
	}
	slices.SortFunc(out, func(a, b featurestore.FeatureSet) int { return strings.Compare(a.Name, b.Name) })
	return out, false, nil
}

// freshView is a set's freshness as a page shows it.
type freshView struct {
	Written       bool
	LastWrite     time.Time
	NewestEvent   time.Time
	RowsLastHour  int64
	RowsPerMinute string
	// Quiet: nothing was written for longer than the set's ttl, so its values are
	// served as EXPIRED by now.
	Quiet bool
	Bars  []bar
}

// bar is one minute of the sparkline (SVG coordinates).
type bar struct {
	X, Y, Height int
	Rows         int64
	Minute       string
}

// Sparkline geometry: 60 bars of 4 px in a 240 x 40 box.
const (
	sparkHeight = 40
	sparkStep   = 4
)

func (h *Handler) freshView(fs featurestore.FeatureSet, f featurestore.Freshness) freshView {
	fv := freshView{Written: !f.LastWrite.IsZero(), LastWrite: f.LastWrite, NewestEvent: f.NewestEventTime, RowsLastHour: f.RowsLastHour()}
	fv.RowsPerMinute = formatRate(f.RowsPerMinute())
	now := h.clock.Now()
	fv.Quiet = fv.Written && fs.TTL > 0 && now.Sub(f.LastWrite) > fs.TTL
	var peak int64
	for _, n := range f.PerMinute {
		peak = max(peak, n)
	}
	for i, n := range f.PerMinute {
		ht := 0
		if peak > 0 && n > 0 {
			ht = max(1, int(n*(sparkHeight-2)/peak))
		}
		fv.Bars = append(fv.Bars, bar{X: i * sparkStep, Y: sparkHeight - ht, Height: ht, Rows: n,
			Minute: fmt.Sprintf("%d min ago", len(f.PerMinute)-1-i)})
	}
	return fv
}

func formatRate(r float64) string {
	switch {
	case r == 0:
		return "0"
	case r < 0.1:
		return "< 0.1"
	case r < 10:
		return fmt.Sprintf("%.1f", r)
	}
	return fmt.Sprintf("%.0f", r)
}

type setRow struct {
	featurestore.FeatureSet
	Fresh freshView
}

type setsData struct {
	basePage
	Query, Owner string
	Owners       []string
	Rows         []setRow
	Total        int // readable sets
	Matched      int
	Truncated    bool // more than maxListed sets in the registry
	Capped       bool // more than maxShown matched
}

// setsPage lists the sets v may read, filtered by text (name, entity type, owner,
// description, feature names; case-insensitive) and by owner, with their freshness.
func (h *Handler) setsPage(w http.ResponseWriter, r *http.Request, v viewer) {
	q := strings.TrimSpace(clip(r.URL.Query().Get("q"), maxQueryLen))
	owner := clip(r.URL.Query().Get("owner"), 256)
	sets, truncated, err := h.readableSets(r, v)
	if err != nil {
		h.domainError(w, r, v, "list feature sets", err)
		return
	}
	d := setsData{basePage: h.base(v, "Feature sets"), Query: q, Owner: owner, Total: len(sets), Truncated: truncated}
	owners := map[string]bool{}
	var shown []featurestore.FeatureSet
	for _, fs := range sets {
		if fs.Owner != "" {
			owners[fs.Owner] = true
		}
		if (owner == "" || fs.Owner == owner) && matches(fs, q) {
			d.Matched++
			if len(shown) < maxShown {
				shown = append(shown, fs)
			}
		}
	}
	d.Capped = d.Matched > len(shown)
	for o := range owners {
		d.Owners = append(d.Owners, o)
	}
	slices.Sort(d.Owners)
	names := make([]string, len(shown))
	for i, fs := range shown {
		names[i] = fs.Name
	}
	fresh, err := h.features.Freshness(r.Context(), names)
	if err != nil {
		h.domainError(w, r, v, "read freshness", err)
		return
	}
	for _, fs := range shown {
		d.Rows = append(d.Rows, setRow{FeatureSet: fs, Fresh: h.freshView(fs, fresh[fs.Name])})
	}
	h.render(w, r, http.StatusOK, "sets", d)
}

// matches reports whether fs matches the text filter q.
func matches(fs featurestore.FeatureSet, q string) bool {
	if q == "" {
		return true
	}
	q = strings.ToLower(q)
	for _, s := range []string{fs.Name, fs.EntityType, fs.Owner, fs.Description} {
		if strings.Contains(strings.ToLower(s), q) {
			return true
		}
	}
	for _, f := range fs.Features {
		if strings.Contains(strings.ToLower(f.Name), q) {
			return true
		}
	}
	return false
}

type setData struct {
	basePage
	Set   featurestore.FeatureSet
	Fresh freshView
	// History is the set's versions, newest first.
	History           []versionView
	HistoryStartsLate bool
	MaxHistory        int
}

type versionView struct {
	Version   int64
	AppliedAt time.Time
	Change    string
}

// setPage shows one set: its definition, features and freshness. A set v may not read
// is reported as not found, so the page does not tell which names exist.
func (h *Handler) setPage(w http.ResponseWriter, r *http.Request, v viewer) {
	name := r.PathValue("name")
	if !h.mayRead(v, name) {
		h.renderError(w, r, &v, http.StatusNotFound, fmt.Sprintf("feature set %q not found", featurestore.Truncate(name)))
		return
	}
	fs, err := h.features.GetFeatureSet(r.Context(), name)
	if err != nil {
		h.domainError(w, r, v, "get feature set", err)
		return
	}
	fresh, err := h.features.Freshness(r.Context(), []string{fs.Name})
	if err != nil {
		h.domainError(w, r, v, "read freshness", err)
		return
	}
	d := setData{basePage: h.base(v, fs.Name), Set: fs, Fresh: h.freshView(fs, fresh[fs.Name]), MaxHistory: featurestore.MaxHistory}
	for i := len(fs.History) - 1; i >= 0; i-- {
		c := fs.History[i]
		d.History = append(d.History, versionView{Version: c.Version, AppliedAt: time.UnixMicro(c.AppliedAt), Change: c.Change})
	}
	d.HistoryStartsLate = len(fs.History) > 0 && fs.History[0].Version > 1
	h.render(w, r, http.StatusOK, "set", d)
}

type cellView struct {
	Feature   string
	Type      string
	Status    string
	Value     string
	EventTime time.Time
}

type lookupData struct {
	basePage
	Sets      []string
	Set       string
	Entity    string
	Looked    bool
	EntityRef featurestore.FeatureSet
	Cells     []cellView
}

// lookupPage reads one entity's current values of every feature of a set through
// GetFeatures, the API's linearizable read path: what it shows is never older than an
// acknowledged write.
func (h *Handler) lookupPage(w http.ResponseWriter, r *http.Request, v viewer) {
	set := clip(r.URL.Query().Get("set"), featurestore.MaxNameLen+1)
	entity := r.URL.Query().Get("entity")
	if len(entity) > featurestore.MaxEntityIDLen {
		h.renderError(w, r, &v, http.StatusBadRequest, fmt.Sprintf("entity: at most %d bytes", featurestore.MaxEntityIDLen))
		return
	}
	sets, _, err := h.readableSets(r, v)
	if err != nil {
		h.domainError(w, r, v, "list feature sets", err)
		return
	}
	d := lookupData{basePage: h.base(v, "Entity lookup"), Set: set, Entity: entity}
	for _, fs := range sets {
		d.Sets = append(d.Sets, fs.Name)
	}
	if set == "" || entity == "" {
		h.render(w, r, http.StatusOK, "lookup", d)
		return
	}
	if !h.mayRead(v, set) {
		h.renderError(w, r, &v, http.StatusNotFound, fmt.Sprintf("feature set %q not found", featurestore.Truncate(set)))
		return
	}
	fs, err := h.features.GetFeatureSet(r.Context(), set)
	if err != nil {
		h.domainError(w, r, v, "get feature set", err)
		return
	}
	refs := make([]string, len(fs.Features))
	for i, f := range fs.Features {
		refs[i] = featurestore.FeatureRef{Set: fs.Name, Feature: f.Name}.String()
	}
	vals, err := h.features.GetFeatures(r.Context(), refs, []string{entity})
	if err != nil {
		h.domainError(w, r, v, "get features", err)
		return
	}
	d.Looked, d.EntityRef = true, fs
	for i, f := range fs.Features {
		c := vals.Cells[i]
		cv := cellView{Feature: f.Name, Type: f.Type.String(), Status: statusName(c.Status)}
		if c.Status == featurestore.Present {
			cv.Value = formatValue(c.Value)
		}
		if c.EventTime > 0 {
			cv.EventTime = time.UnixMicro(c.EventTime)
		}
		d.Cells = append(d.Cells, cv)
	}
	h.render(w, r, http.StatusOK, "lookup", d)
}

func statusName(s featurestore.FeatureStatus) string {
	switch s {
	case featurestore.Present:
		return "present"
	case featurestore.NotFoundStatus:
		return "not found"
	case featurestore.Expired:
		return "expired"
	}
	return "unspecified"
}

type jobView struct {
	ID           string
	State        string
	RequestedAt  time.Time
	CompletedAt  time.Time
	ItemsDeleted int64
	Failure      string
	// SubjectID is shown only while the job is pending or running.
	SubjectID string
}

type deletionData struct {
	basePage
	ID      string
	Enabled bool
	Job     *jobView
}

// deletionPage shows a deletion's status by id, to identities with the GDPR permission.
// The subject id is never shown once the job is DONE or FAILED, whatever the job store
// returned.
func (h *Handler) deletionPage(w http.ResponseWriter, r *http.Request, v viewer) {
	if !h.mayGdpr(v) {
		h.renderError(w, r, &v, http.StatusForbidden, "Deletions are shown only to identities with the GDPR permission.")
		return
	}
	id := clip(strings.TrimSpace(r.URL.Query().Get("id")), 64)
	d := deletionData{basePage: h.base(v, "Deletion status"), ID: id, Enabled: h.deletions != nil}
	if id == "" || h.deletions == nil {
		h.render(w, r, http.StatusOK, "deletion", d)
		return
	}
	j, err := h.deletions.GetDeletion(r.Context(), id)
	if err != nil {
		h.domainError(w, r, v, "get deletion", err)
		return
	}
	jv := &jobView{ID: j.ID, State: strings.ToLower(string(j.State)), RequestedAt: j.RequestedAt, CompletedAt: j.CompletedAt, ItemsDeleted: j.ItemsDeleted}
	switch j.State {
	case gdpr.Pending, gdpr.Running:
		jv.SubjectID = j.Subject
	case gdpr.Failed:
		jv.Failure = j.Failure
	}
	d.Job = jv
	h.render(w, r, http.StatusOK, "deletion", d)
}

// clip cuts s to at most n bytes at a UTF-8 boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// safePath is the request path for logs, cut short.
func safePath(r *http.Request) string { return featurestore.Truncate(r.URL.Path) }
