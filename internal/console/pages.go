package console

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/edupulse/pulsebus/pkg/dispatch"
)

// Limits of what one page shows.
const (
	// listLimit is the most rows a list shows.
	listLimit = 100
	// maxPayloadShown is the most bytes of a payload a page shows.
	maxPayloadShown = 64 << 10
	// maxBinaryShown is the most bytes of a binary payload shown as hex.
	maxBinaryShown = 4 << 10
)

var templateFuncs = template.FuncMap{
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"age": func(t, now time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return now.Sub(t).Round(time.Second).String()
	},
	"count": func(c Count) string {
		if !c.Capped {
			return strconv.FormatInt(c.N, 10)
		}
		if c.Estimate > c.N {
			return fmt.Sprintf("%d+ (about %d)", c.N, c.Estimate)
		}
		return fmt.Sprintf("%d+", c.N)
	},
	"cut": func(s string, n int) string {
		if utf8.RuneCountInString(s) <= n {
			return s
		}
		return string([]rune(s)[:n]) + "…"
	},
	"p99": func(d time.Duration) string {
		switch {
		case d == 0:
			return "–"
		case d < 0:
			return "> largest bucket"
		}
		return "≤ " + d.String()
	},
	"bytes": func(n int) string {
		switch {
		case n >= 1<<20:
			return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
		case n >= 1<<10:
			return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
		}
		return fmt.Sprintf("%d B", n)
	},
}

// pathID parses the {id} of a path.
func pathID(r request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("%q is not a row id (a positive integer)", r.PathValue("id"))
	}
	return id, nil
}

// handlerLag is a handler with its offsets' high watermarks and lag.
type handlerLag struct {
	HandlerSummary
	Rows []offsetLag
	// Lag sums the partitions' lag; LagKnown is false when a high
	// watermark could not be read.
	Lag        int64
	LagKnown   bool
	CanRedrive bool
	// P99 is the commit-to-handle p99 this process measured (0: not
	// measured here; -1: above the histogram's largest bucket).
	P99 time.Duration
}

// offsetLag is an offset with its partition's high watermark (-1 when
// unknown) and lag.
type offsetLag struct {
	OffsetRow
	HighWatermark int64
	Lag           int64
}

// withLag adds high watermarks and lag to the handlers' offsets.
func (s *Server) withLag(r request, hs []HandlerSummary) ([]handlerLag, string) {
	var parts []topicPartition
	seen := map[topicPartition]bool{}
	for _, h := range hs {
		for _, o := range h.Offsets {
			if tp := (topicPartition{o.Topic, o.Partition}); !seen[tp] {
				seen[tp] = true
				parts = append(parts, tp)
			}
		}
	}
	marks, err := s.marks.get(r.Context(), parts)
	kafkaErr := ""
	switch {
	case s.cfg.Kafka == nil:
		kafkaErr = "this console has no Kafka connection: lag is not shown"
	case err != nil:
		kafkaErr = err.Error()
	}
	p99 := commitToHandleP99(s.cfg.Metrics)
	out := make([]handlerLag, 0, len(hs))
	for _, h := range hs {
		hl := handlerLag{HandlerSummary: h, LagKnown: true, CanRedrive: s.canRedrive(h.Group, h.Handler)}
		if h.Group == s.cfg.RedriveGroup {
			hl.P99 = p99[h.Handler]
		}
		for _, o := range h.Offsets {
			ol := offsetLag{OffsetRow: o, HighWatermark: -1}
			if hw, ok := marks[topicPartition{o.Topic, o.Partition}]; ok {
				ol.HighWatermark, ol.Lag = hw, max(0, hw-o.NextOffset)
				hl.Lag += ol.Lag
			} else {
				hl.LagKnown = false
			}
			hl.Rows = append(hl.Rows, ol)
		}
		out = append(out, hl)
	}
	return out, kafkaErr
}

func (s *Server) canRedrive(group, handler string) bool {
	return s.cfg.Redrive != nil && group == s.cfg.RedriveGroup && slices.Contains(s.cfg.RedriveHandlers, handler)
}

type overviewData struct {
	Overview
	Handlers []handlerLag
	KafkaErr string
}

func (s *Server) overview(w http.ResponseWriter, r request) {
	o, err := s.cfg.Data.Overview(r.Context())
	if err != nil {
		s.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	hs, kafkaErr := s.withLag(r, o.Handlers)
	s.render(w, r, http.StatusOK, "overview", "Overview", overviewData{Overview: o, Handlers: hs, KafkaErr: kafkaErr})
}

type outboxData struct {
	Waiting     []WaitingRow
	Parked      []ParkedRow
	ParkedCount Count
	Now         time.Time
	CanAct      bool
}

func (s *Server) outbox(w http.ResponseWriter, r request) {
	waiting, err := s.cfg.Data.WaitingHead(r.Context(), listLimit)
	if err != nil {
		s.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	parked, n, err := s.cfg.Data.Parked(r.Context(), listLimit)
	if err != nil {
		s.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	s.render(w, r, http.StatusOK, "outbox", "Outbox", outboxData{Waiting: waiting, Parked: parked, ParkedCount: n,
		Now: time.Now(), CanAct: s.cfg.Parked != nil && !s.cfg.ReadOnly})
}

type parkedDetailData struct {
	Row     ParkedRow
	Payload shownPayload
	CanAct  bool
}

func (s *Server) parkedDetail(w http.ResponseWriter, r request) {
	id, err := pathID(r)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err)
		return
	}
	row, payload, ok, err := s.cfg.Data.ParkedRow(r.Context(), id)
	switch {
	case err != nil:
		s.fail(w, r, http.StatusInternalServerError, err)
		return
	case !ok:
		s.fail(w, r, http.StatusNotFound, fmt.Errorf("no parked row with id %d (requeued or deleted already?)", id))
		return
	}
	s.render(w, r, http.StatusOK, "parked", fmt.Sprintf("Parked row %d", id), parkedDetailData{Row: row,
		Payload: showPayload(payload, s.cfg.HidePayloads), CanAct: s.cfg.Parked != nil && !s.cfg.ReadOnly})
}

func (s *Server) requeueParked(w http.ResponseWriter, r request) {
	id, err := pathID(r)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err)
		return
	}
	if s.cfg.Parked == nil {
		s.fail(w, r, http.StatusNotFound, errors.New("this binary cannot requeue parked rows"))
		return
	}
	newID, found, err := s.cfg.Parked.RequeueParked(r.Context(), id)
	switch {
	case err != nil:
		s.fail(w, r, http.StatusInternalServerError, err)
		return
	case !found:
		s.fail(w, r, http.StatusNotFound, fmt.Errorf("no parked row with id %d (requeued or deleted already?)", id))
		return
	}
	s.log.Info("console: requeued a parked row into the outbox", "parked_id", id, "outbox_id", newID, "who", r.sess.who(), "remote", r.RemoteAddr)
	s.done(w, r, "/outbox", fmt.Sprintf("Requeued parked row %d as outbox row %d; the relay publishes it after the rows already waiting.", id, newID))
}

func (s *Server) deleteParked(w http.ResponseWriter, r request) {
	id, err := pathID(r)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err)
		return
	}
	if s.cfg.Parked == nil {
		s.fail(w, r, http.StatusNotFound, errors.New("this binary cannot delete parked rows"))
		return
	}
	row, _, ok, err := s.cfg.Data.ParkedRow(r.Context(), id)
	if err == nil && ok {
		ok, err = s.cfg.Parked.DeleteParked(r.Context(), id)
	}
	switch {
	case err != nil:
		s.fail(w, r, http.StatusInternalServerError, err)
		return
	case !ok:
		s.fail(w, r, http.StatusNotFound, fmt.Errorf("no parked row with id %d (requeued or deleted already?)", id))
		return
	}
	s.log.Info("console: deleted a parked row", "parked_id", id, "event_id", row.EventID, "topic", row.Topic, "type", row.Type,
		"who", r.sess.who(), "remote", r.RemoteAddr)
	s.done(w, r, "/outbox", fmt.Sprintf("Deleted parked row %d (event %s); it will never be published.", id, row.EventID))
}

type consumersData struct {
	Handlers []handlerLag
	KafkaErr string
	CanAct   bool
}

func (s *Server) consumers(w http.ResponseWriter, r request) {
	o, err := s.cfg.Data.Overview(r.Context())
	if err != nil {
		s.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	hs, kafkaErr := s.withLag(r, o.Handlers)
	s.render(w, r, http.StatusOK, "consumers", "Consumers", consumersData{Handlers: hs, KafkaErr: kafkaErr,
		CanAct: s.cfg.Replay != nil && !s.cfg.ReadOnly})
}

// replayInput is the replay form's fields.
type replayInput struct {
	Group, Handler, Topic string
	// Partition is "" for all.
	Partition string
	// Kind is earliest, latest, time or offset; Value the time or offset.
	Kind, Value string
}

func readReplayInput(get func(string) string) replayInput {
	return replayInput{Group: get("group"), Handler: get("handler"), Topic: strings.TrimSpace(get("topic")),
		Partition: strings.TrimSpace(get("partition")), Kind: get("kind"), Value: strings.TrimSpace(get("value"))}
}

// params checks the form and turns it into replay parameters; errors name
// the field that is wrong.
func (in replayInput) params() (dispatch.ReplayParams, error) {
	p := dispatch.ReplayParams{Group: in.Group, Handler: in.Handler, Topic: in.Topic, Partition: -1}
	if in.Group == "" || in.Handler == "" {
		return p, errors.New("group and handler are required")
	}
	if in.Partition != "" {
		n, err := strconv.Atoi(in.Partition)
		if err != nil || n < 0 {
			return p, fmt.Errorf("partition %q is not a partition number (0 or more)", in.Partition)
		}
		if in.Topic == "" {
			return p, errors.New("a partition needs its topic")
		}
		p.Partition = n
	}
	var target string
	switch in.Kind {
	case "earliest", "latest":
		target = in.Kind
	case "time":
		t, err := time.Parse(time.RFC3339Nano, in.Value)
		if err != nil {
			t, err = time.Parse("2006-01-02T15:04", in.Value) // <input type=datetime-local>, read as UTC
		}
		if err != nil {
			return p, fmt.Errorf("time %q is not an RFC 3339 time (2026-01-02T15:04:05Z)", in.Value)
		}
		target = t.UTC().Format(time.RFC3339Nano)
	case "offset":
		target = in.Value
	default:
		return p, fmt.Errorf("replay target %q: choose earliest, latest, time or offset", in.Kind)
	}
	to, err := dispatch.ParseReplayTarget(target)
	if err != nil {
		return p, err
	}
	p.To = to
	return p, nil
}

type replayData struct {
	In      replayInput
	Preview []dispatch.ReplayChange
	Err     string
	CanAct  bool
}

// replayForm shows the replay form and, once a target is chosen, the
// preview of old → new offsets with the button that applies it.
func (s *Server) replayForm(w http.ResponseWriter, r request) {
	in := readReplayInput(r.URL.Query().Get)
	d := replayData{In: in, CanAct: s.cfg.Replay != nil && !s.cfg.ReadOnly}
	if in.Kind != "" && d.CanAct {
		p, err := in.params()
		if err == nil {
			d.Preview, err = s.cfg.Replay.PreviewReplay(r.Context(), p)
		}
		if err != nil {
			d.Err = err.Error()
		}
	}
	s.render(w, r, http.StatusOK, "replay", "Replay "+in.Handler, d)
}

func (s *Server) replay(w http.ResponseWriter, r request) {
	if s.cfg.Replay == nil {
		s.fail(w, r, http.StatusNotFound, errors.New("this binary cannot replay handlers"))
		return
	}
	in := readReplayInput(r.PostFormValue)
	p, err := in.params()
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err)
		return
	}
	before, err := s.cfg.Data.Offsets(r.Context())
	if err != nil {
		s.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	old := map[topicPartition]int64{}
	for _, o := range before {
		if o.Group == p.Group && o.Handler == p.Handler {
			old[topicPartition{o.Topic, o.Partition}] = o.NextOffset
		}
	}
	written, err := s.cfg.Replay.Replay(r.Context(), p)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err)
		return
	}
	changes := make([]string, 0, len(written))
	for _, h := range written {
		from, ok := old[topicPartition{h.Topic, h.Partition}]
		fromText := "none"
		if ok {
			fromText = strconv.FormatInt(from, 10)
		}
		changes = append(changes, fmt.Sprintf("%s/%d %s→%d", h.Topic, h.Partition, fromText, h.NextOffset))
	}
	slices.Sort(changes)
	s.log.Info("console: replayed a handler", "group", p.Group, "handler", p.Handler, "target", in.Kind+" "+in.Value,
		"offsets", strings.Join(changes, " "), "who", r.sess.who(), "remote", r.RemoteAddr)
	s.done(w, r, "/consumers", fmt.Sprintf("Replayed handler %s of group %s: %s.", p.Handler, p.Group, strings.Join(changes, ", ")))
}

type deadLettersData struct {
	Filter DeadLetterFilter
	Rows   []DeadLetterRow
	// Next is the id to page on from, 0 on the last page.
	Next int64
	// Matching counts the rows the filter selects, up to MaxID, when a
	// group is chosen: what the bulk actions act on.
	Matching   *Count
	MaxID      int64
	CanDelete  bool
	CanRedrive bool
}

func (s *Server) deadLetters(w http.ResponseWriter, r request) {
	q := r.URL.Query()
	f := DeadLetterFilter{Group: q.Get("group"), Handler: q.Get("handler"), ErrorText: q.Get("q"), Limit: listLimit}
	if a := q.Get("after"); a != "" {
		n, err := strconv.ParseInt(a, 10, 64)
		if err != nil || n < 0 {
			s.fail(w, r, http.StatusBadRequest, fmt.Errorf("after=%q is not a dead letter id", a))
			return
		}
		f.AfterID = n
	}
	rows, err := s.cfg.Data.DeadLetters(r.Context(), f)
	if err != nil {
		s.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	d := deadLettersData{Filter: f, Rows: rows}
	if len(rows) == listLimit {
		d.Next = rows[len(rows)-1].ID
	}
	if f.Group != "" && f.AfterID == 0 && !s.cfg.ReadOnly {
		n, maxID, err := s.cfg.Data.CountDeadLetters(r.Context(), f)
		if err != nil {
			s.fail(w, r, http.StatusInternalServerError, err)
			return
		}
		d.Matching, d.MaxID, d.CanDelete = &n, maxID, n.N > 0
		d.CanRedrive = n.N > 0 && !n.Capped && f.Handler != "" && f.ErrorText == "" && s.canRedrive(f.Group, f.Handler)
	}
	s.render(w, r, http.StatusOK, "deadletters", "Dead letters", d)
}

// bulkFilter reads the filter and the id bound of a bulk action's form.
func bulkFilter(r request) (DeadLetterFilter, int64, error) {
	f := DeadLetterFilter{Group: r.PostFormValue("group"), Handler: r.PostFormValue("handler"), ErrorText: r.PostFormValue("q")}
	if f.Group == "" {
		return f, 0, errors.New("a bulk action needs a group")
	}
	maxID, err := strconv.ParseInt(r.PostFormValue("max_id"), 10, 64)
	if err != nil || maxID <= 0 {
		return f, 0, fmt.Errorf("max_id=%q is not a dead letter id", r.PostFormValue("max_id"))
	}
	return f, maxID, nil
}

// filterQuery is the dead letters page's query string for f.
func filterQuery(f DeadLetterFilter) string {
	return url.Values{"group": {f.Group}, "handler": {f.Handler}, "q": {f.ErrorText}}.Encode()
}

func (s *Server) deleteDeadLetters(w http.ResponseWriter, r request) {
	f, maxID, err := bulkFilter(r)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err)
		return
	}
	n, err := s.cfg.Data.DeleteDeadLetters(r.Context(), f, maxID)
	if err != nil {
		s.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	s.log.Info("console: deleted dead letters by filter", "deleted", n, "group", f.Group, "handler", f.Handler,
		"error_contains", f.ErrorText, "max_id", maxID, "who", r.sess.who(), "remote", r.RemoteAddr)
	s.done(w, r, "/dead-letters?"+filterQuery(f), fmt.Sprintf("Deleted %d dead letter(s) of group %s.", n, f.Group))
}

func (s *Server) redriveDeadLetters(w http.ResponseWriter, r request) {
	f, _, err := bulkFilter(r)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err)
		return
	}
	if f.Handler == "" || f.ErrorText != "" || !s.canRedrive(f.Group, f.Handler) {
		s.fail(w, r, http.StatusBadRequest, fmt.Errorf("this process redrives all dead letters of one of its own handlers only (group %s, handler %q)", f.Group, f.Handler))
		return
	}
	res, err := s.cfg.Redrive.Redrive(r.Context(), dispatch.DeadLetterFilter{Handler: f.Handler})
	if err != nil {
		s.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	s.log.Info("console: redrove dead letters of a handler", "group", f.Group, "handler", f.Handler, "redriven", res.Redriven,
		"failed", res.Failed, "skipped", res.Skipped, "who", r.sess.who(), "remote", r.RemoteAddr)
	msg := fmt.Sprintf("Redrove the dead letters of handler %s: %d handled and deleted, %d failed again, %d skipped (being redriven elsewhere).",
		f.Handler, res.Redriven, res.Failed, res.Skipped)
	if len(res.Errors) > 0 {
		msg += " First error: " + res.Errors[0]
	}
	s.done(w, r, "/dead-letters?"+filterQuery(f), msg)
}

type deadLetterData struct {
	Row        DeadLetterDetail
	Key        shownPayload
	Headers    []shownHeader
	Payload    shownPayload
	CanDelete  bool
	CanRedrive bool
}

type shownHeader struct{ Key, Value string }

func (s *Server) deadLetterDetail(w http.ResponseWriter, r request) {
	id, err := pathID(r)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err)
		return
	}
	dl, ok, err := s.cfg.Data.DeadLetter(r.Context(), id)
	switch {
	case err != nil:
		s.fail(w, r, http.StatusInternalServerError, err)
		return
	case !ok:
		s.fail(w, r, http.StatusNotFound, fmt.Errorf("no dead letter with id %d (redriven or deleted already?)", id))
		return
	}
	d := deadLetterData{Row: dl, Key: showPayload(dl.Key, false), Payload: showPayload(dl.Value, s.cfg.HidePayloads),
		CanDelete: !s.cfg.ReadOnly, CanRedrive: !s.cfg.ReadOnly && s.canRedrive(dl.Group, dl.Handler)}
	for _, h := range dl.Headers {
		v := "(hidden)"
		if !s.cfg.HidePayloads {
			v = showPayload(h.Value, false).Text
		}
		d.Headers = append(d.Headers, shownHeader{Key: h.Key, Value: v})
	}
	s.render(w, r, http.StatusOK, "deadletter", fmt.Sprintf("Dead letter %d", id), d)
}

func (s *Server) deleteDeadLetter(w http.ResponseWriter, r request) {
	id, err := pathID(r)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err)
		return
	}
	dl, ok, err := s.cfg.Data.DeleteDeadLetter(r.Context(), id)
	switch {
	case err != nil:
		s.fail(w, r, http.StatusInternalServerError, err)
		return
	case !ok:
		s.fail(w, r, http.StatusNotFound, fmt.Errorf("no dead letter with id %d (redriven or deleted already?)", id))
		return
	}
	s.log.Info("console: deleted a dead letter", "id", id, "group", dl.Group, "handler", dl.Handler, "topic", dl.Topic,
		"partition", dl.Partition, "offset", dl.Offset, "event_id", dl.EventID, "who", r.sess.who(), "remote", r.RemoteAddr)
	s.done(w, r, "/dead-letters", fmt.Sprintf("Deleted dead letter %d (handler %s, %s/%d offset %d).", id, dl.Handler, dl.Topic, dl.Partition, dl.Offset))
}

func (s *Server) redriveDeadLetter(w http.ResponseWriter, r request) {
	id, err := pathID(r)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err)
		return
	}
	dl, ok, err := s.cfg.Data.DeadLetter(r.Context(), id)
	switch {
	case err != nil:
		s.fail(w, r, http.StatusInternalServerError, err)
		return
	case !ok:
		s.fail(w, r, http.StatusNotFound, fmt.Errorf("no dead letter with id %d (redriven or deleted already?)", id))
		return
	case !s.canRedrive(dl.Group, dl.Handler):
		s.fail(w, r, http.StatusBadRequest, fmt.Errorf("this process does not run handler %s of group %s: redrive it from a consumer that does", dl.Handler, dl.Group))
		return
	}
	res, err := s.cfg.Redrive.Redrive(r.Context(), dispatch.DeadLetterFilter{ID: id})
	if err != nil {
		s.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	s.log.Info("console: redrove a dead letter", "id", id, "group", dl.Group, "handler", dl.Handler, "event_id", dl.EventID,
		"redriven", res.Redriven, "failed", res.Failed, "errors", res.Errors, "who", r.sess.who(), "remote", r.RemoteAddr)
	if res.Redriven == 1 {
		s.done(w, r, "/dead-letters", fmt.Sprintf("Redrove dead letter %d: handler %s handled it, and the row is deleted.", id, dl.Handler))
		return
	}
	s.done(w, r, fmt.Sprintf("/dead-letters/%d", id), fmt.Sprintf("Redrive of dead letter %d failed again: %s", id, strings.Join(res.Errors, "; ")))
}

type lookupData struct {
	ID    string
	Err   string
	Found *EventLocations
	Now   time.Time
}

func (s *Server) lookup(w http.ResponseWriter, r request) {
	d := lookupData{ID: strings.TrimSpace(r.URL.Query().Get("id")), Now: time.Now()}
	if d.ID != "" {
		id, err := uuid.Parse(d.ID)
		if err != nil {
			d.Err = fmt.Sprintf("%q is not an event id (a UUID)", d.ID)
		} else {
			loc, err := s.cfg.Data.Lookup(r.Context(), id)
			if err != nil {
				s.fail(w, r, http.StatusInternalServerError, err)
				return
			}
			d.Found = &loc
		}
	}
	s.render(w, r, http.StatusOK, "events", "Event lookup", d)
}

// shownPayload is a payload as a page shows it.
type shownPayload struct {
	// Hidden is set by --console-hide-payloads.
	Hidden bool
	Bytes  int
	// Kind is "JSON", "text", "binary (hex)" or "empty".
	Kind string
	Text string
	// Cut is true when Text shows only the start of it.
	Cut bool
}

// showPayload renders b for a page: JSON pretty-printed, UTF-8 text as it
// is, anything else as a hex dump; at most maxPayloadShown bytes of it.
func showPayload(b []byte, hide bool) shownPayload {
	p := shownPayload{Bytes: len(b), Hidden: hide}
	switch {
	case hide:
		return p
	case len(b) == 0:
		p.Kind = "empty"
		return p
	case len(b) <= 4*maxPayloadShown && json.Valid(b):
		var out bytes.Buffer
		if json.Indent(&out, b, "", "  ") == nil {
			p.Kind, p.Text = "JSON", out.String()
		}
	}
	if p.Kind == "" && utf8.Valid(b) {
		p.Kind, p.Text = "text", string(b)
	}
	if p.Kind == "" {
		p.Kind = "binary (hex)"
		if len(b) > maxBinaryShown {
			b, p.Cut = b[:maxBinaryShown], true
		}
		p.Text = hex.Dump(b)
		return p
	}
	if len(p.Text) > maxPayloadShown {
		cut := maxPayloadShown
		for cut > 0 && !utf8.RuneStart(p.Text[cut]) {
			cut--
		}
		p.Text, p.Cut = p.Text[:cut], true
	}
	return p
}
