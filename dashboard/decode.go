package dashboard

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jobhost/jobhost/bindings"
	"github.com/jobhost/jobhost/status"
	"github.com/jobhost/jobhost/triggers"
)

// maxShown is the most bytes of a body, input or output a page shows.
const maxShown = 16 << 10

// shown is a message body or JSON value as a page shows it.
type shown struct {
	// Text is what to show (html/template escapes it).
	Text string
	// Raw is the stored text when Text was decoded from it ("" otherwise).
	Raw string
	// Note says how Text was made ("" when it is the stored text as is).
	Note string
}

// showBody decodes a stored message body for display, as the CLI's
// poison list does: under messageEncoding base64 (the function's, or, when
// the host does not say, assumed for Storage Queues when the body decodes
// to text, as the Functions default is base64) it is shown decoded, with
// the stored text at hand; JSON is indented; a body that is not text is
// shown escaped.
func showBody(encoding, broker string, body []byte) shown {
	switch {
	case encoding == string(bindings.Base64):
		pl, err := bindings.Base64.Decode(body)
		if err != nil {
			s := showText(body)
			s.Note = joinNotes("not valid base64 although the function's messageEncoding is base64: shown as stored", s.Note)
			return s
		}
		s := showText(pl)
		s.Raw, s.Note = truncate(string(body)), joinNotes("decoded from base64 (messageEncoding base64)", s.Note)
		return s
	case encoding == "" && broker == "azurequeue":
		if pl, err := bindings.Base64.Decode(body); err == nil && len(pl) > 0 && isText(pl) {
			s := showText(pl)
			s.Raw, s.Note = truncate(string(body)), joinNotes("decoded from base64 (messageEncoding base64)", s.Note)
			return s
		}
	}
	return showText(body)
}

// showText shows b: indented when it is JSON, escaped when it is not text.
func showText(b []byte) shown {
	if !isText(b) {
		q := strconv.QuoteToASCII(string(b[:min(len(b), maxShown)]))
		note := "not text: shown escaped"
		if len(b) > maxShown {
			note += "; the first " + strconv.Itoa(maxShown) + " of " + strconv.Itoa(len(b)) + " bytes"
		}
		return shown{Text: q, Note: note}
	}
	var s shown
	if json.Valid(b) && len(b) <= maxShown {
		var buf bytes.Buffer
		if json.Indent(&buf, b, "", "  ") == nil {
			b = buf.Bytes()
		}
	}
	s.Text = truncate(string(b))
	if len(s.Text) < len(b) {
		s.Note = "the first " + strconv.Itoa(maxShown) + " of " + strconv.Itoa(len(b)) + " bytes"
	}
	return s
}

// showJSON shows a record's JSON value ("" for none).
func showJSON(b json.RawMessage) shown {
	if len(b) == 0 {
		return shown{}
	}
	return showText(b)
}

func truncate(s string) string {
	if len(s) <= maxShown {
		return s
	}
	s = s[:maxShown]
	for !utf8.ValidString(s) { // do not cut a rune in two
		s = s[:len(s)-1]
	}
	return s + "…"
}

func joinNotes(a, b string) string {
	if b == "" {
		return a
	}
	return a + "; " + b
}

// isText reports whether b is UTF-8 without control characters other than
// white space.
func isText(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if unicode.IsControl(r) && r != '\n' && r != '\r' && r != '\t' {
			return false
		}
	}
	return true
}

// poisonRow is one poison message as the poison page shows it.
type poisonRow struct {
	ID           string
	Sequence     uint64
	DequeueCount int64
	Inserted     time.Time
	Body         shown
	Reason       string
	Properties   []property
}

type property struct{ Key, Value string }

// reasonHeaders are where the drivers put why a message was poisoned.
var reasonHeaders = []string{"x-jobhost-reason", "jobhost-reason"}

func newPoisonRow(f status.Function, m *triggers.PoisonMessage) poisonRow {
	row := poisonRow{ID: m.ID, Sequence: m.Sequence, DequeueCount: m.DequeueCount, Inserted: m.InsertionTime,
		Body: showBody(f.MessageEncoding, f.Broker, m.Body), Reason: m.Reason}
	for _, k := range slices.Sorted(maps.Keys(m.Properties)) {
		v := m.Properties[k]
		if row.Reason == "" && slices.ContainsFunc(reasonHeaders, func(h string) bool { return strings.EqualFold(h, k) }) {
			row.Reason = v
		}
		row.Properties = append(row.Properties, property{k, short(512, v)})
	}
	return row
}
