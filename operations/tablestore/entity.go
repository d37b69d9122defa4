package tablestore

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/jobhost/jobhost/operations"
)

// Service limits (Azure Table Storage; Azurite applies the same ones).
const (
	// maxStringUnits is the most UTF-16 code units a string property
	// holds (64 KiB).
	maxStringUnits = 32 << 10
	// maxBinary is the most bytes a binary property holds.
	maxBinary = 64 << 10
	// maxEntity is the largest entity, with room to spare for the
	// service's own accounting (the Timestamp, odata annotations).
	maxEntity = 1<<20 - 4<<10
	// maxKey is the longest id kept (a PartitionKey is at most 1 KiB as
	// UTF-16).
	maxKey = 512
)

// rowKey is every record's RowKey: one entity a partition.
const rowKey = ""

// Property names.
const (
	pName           = "Name"
	pRunAs          = "RunAs"
	pStatus         = "Status"
	pState          = "State"
	pAttempt        = "Attempt"
	pErrorCode      = "ErrorCode"
	pStartTime      = "StartTime"
	pEndTime        = "EndTime"
	pCreatedOn      = "CreatedOn"
	pLastUpdated    = "LastUpdated"
	pExpiresOn      = "ExpiresOn"
	pInput          = "Input"
	pOutput         = "Output"
	pProgress       = "Progress"
	pErrorMessage   = "ErrorMessage"
	pCallbackURL    = "CallbackURL"
	pIdempotencyKey = "IdempotencyKey"
)

const (
	odataType    = "@odata.type"
	edmDateTime  = "Edm.DateTime"
	edmBinary    = "Edm.Binary"
	dateTimeForm = "2006-01-02T15:04:05.0000000Z"
)

// tick is the service's time precision.
const tick = 100 * time.Nanosecond

// minTime is the earliest Edm.DateTime the service keeps.
var minTime = time.Date(1601, 1, 1, 0, 0, 0, 0, time.UTC)

// norm returns t in UTC at the service's precision (zero stays zero).
func norm(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(tick)
}

// ceil returns t in UTC rounded up to the service's precision: a stored
// time s (a multiple of tick) is before t exactly when it is before
// ceil(t).
func ceil(t time.Time) time.Time {
	u := t.UTC()
	if n := u.Truncate(tick); !n.Equal(u) {
		return n.Add(tick)
	}
	return u
}

// formatTime renders t as the service's Edm.DateTime text.
func formatTime(t time.Time) string { return t.UTC().Format(dateTimeForm) }

// entity is a record encoded: the JSON body, the record it decodes to (what
// the store returns) and its size as the service counts it.
type entity struct {
	body   []byte
	record *operations.Record
}

// props builds an entity's properties.
type props struct {
	m    map[string]any
	size int // the service's count: 4 + keys + each property's share
	err  error
}

func (p *props) add(name string, v any, valueSize int) {
	p.m[name] = v
	p.size += 8 + 2*len(name) + valueSize
}

// str adds a string property that must fit one property (Name, RunAs).
func (p *props) str(name, v string) {
	if !utf8.ValidString(v) {
		p.fail(fmt.Errorf("tablestore: %s is not valid UTF-8, as a table property must be", name))
		return
	}
	units := utf16Len(v)
	if units > maxStringUnits {
		p.fail(fmt.Errorf("%w: %s is %d UTF-16 code units long; a table property holds at most %d", ErrTooLarge, name, units, maxStringUnits))
		return
	}
	p.add(name, v, 4+2*units)
}

func (p *props) int32(name string, v int) { p.add(name, v, 4) }

func (p *props) time(name string, t time.Time) {
	if t.IsZero() {
		return
	}
	p.m[name+odataType] = edmDateTime
	p.add(name, formatTime(t), 8)
}

// blob adds a value that is kept byte for byte: as one string property
// when it is valid UTF-8 and fits one, else as numbered binary properties
// (name0, name1, ...). A nil value adds nothing.
func (p *props) blob(name string, b []byte) {
	if b == nil {
		return
	}
	if utf8.Valid(b) {
		if units := utf16Len(string(b)); units <= maxStringUnits {
			p.add(name, string(b), 4+2*units)
			return
		}
	}
	for i := 0; len(b) > 0; i++ {
		n := min(len(b), maxBinary)
		key := name + strconv.Itoa(i)
		p.m[key+odataType] = edmBinary
		p.add(key, base64.StdEncoding.EncodeToString(b[:n]), 4+n)
		b = b[n:]
	}
}

func (p *props) fail(err error) {
	if p.err == nil {
		p.err = err
	}
}

// encode turns r into an entity. It normalises r's times (UTC, 100 ns) and
// returns the record as it will be stored; an entity that cannot be stored
// is an error wrapping ErrTooLarge.
func encode(r *operations.Record) (*entity, error) {
	if err := validID(r.ID); err != nil {
		return nil, err
	}
	out := r.Clone()
	out.Version = ""
	out.StartTime, out.EndTime = norm(out.StartTime), norm(out.EndTime)
	out.CreatedOn, out.LastUpdated, out.ExpiresOn = norm(out.CreatedOn), norm(out.LastUpdated), norm(out.ExpiresOn)

	p := &props{m: map[string]any{"PartitionKey": out.ID, "RowKey": rowKey}, size: 4 + 2*utf16Len(out.ID)}
	p.str(pName, out.Name)
	p.str(pRunAs, out.RunAs)
	p.int32(pStatus, int(out.Status))
	p.int32(pState, int(out.Status.State()))
	p.int32(pAttempt, out.Attempt)
	if out.ErrorCode != "" {
		p.str(pErrorCode, out.ErrorCode)
	}
	p.time(pStartTime, out.StartTime)
	p.time(pEndTime, out.EndTime)
	p.time(pCreatedOn, out.CreatedOn)
	p.time(pLastUpdated, out.LastUpdated)
	p.time(pExpiresOn, out.ExpiresOn)
	p.blob(pInput, out.Input)
	p.blob(pOutput, out.Output)
	p.blob(pProgress, out.Progress)
	p.blob(pErrorMessage, optional(out.ErrorMessage))
	p.blob(pCallbackURL, optional(out.CallbackURL))
	p.blob(pIdempotencyKey, optional(out.IdempotencyKey))
	if p.err != nil {
		return nil, p.err
	}
	body, err := json.Marshal(p.m)
	if err != nil {
		return nil, fmt.Errorf("tablestore: encode record %q: %w", out.ID, err)
	}
	if p.size > maxEntity || len(body) > maxEntity {
		return nil, fmt.Errorf("%w: record %q encodes to %d bytes (%d as JSON); an entity holds at most 1 MiB (input %d bytes, output %d)",
			ErrTooLarge, out.ID, p.size, len(body), len(out.Input), len(out.Output))
	}
	return &entity{body: body, record: out}, nil
}

// optional returns s's bytes, nil when it is empty.
func optional(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

// validID reports whether id can be a PartitionKey: not empty, at most
// maxKey bytes of UTF-8, without '/', '\\', '#', '?' or control characters.
func validID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("tablestore: the record has no id")
	case len(id) > maxKey:
		return fmt.Errorf("tablestore: invalid id (%d bytes): a table store keeps ids of at most %d bytes", len(id), maxKey)
	case !utf8.ValidString(id):
		return fmt.Errorf("tablestore: invalid id %q: not valid UTF-8", id)
	}
	for _, c := range id {
		if c == '/' || c == '\\' || c == '#' || c == '?' || c < 0x20 || (c >= 0x7f && c <= 0x9f) {
			return fmt.Errorf("tablestore: invalid id %q: %q is not allowed in a table key", id, c)
		}
	}
	return nil
}

// decode reads an entity's JSON (as the service returns it, minimal
// metadata) into a record.
func decode(body []byte) (*operations.Record, string, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, "", fmt.Errorf("tablestore: decode entity: %w", err)
	}
	d := decoder{m: m}
	r := &operations.Record{
		ID:          d.str("PartitionKey"),
		Name:        d.str(pName),
		RunAs:       d.str(pRunAs),
		Status:      operations.Status(d.int(pStatus)),
		Attempt:     d.int(pAttempt),
		ErrorCode:   d.str(pErrorCode),
		StartTime:   d.time(pStartTime),
		EndTime:     d.time(pEndTime),
		CreatedOn:   d.time(pCreatedOn),
		LastUpdated: d.time(pLastUpdated),
		ExpiresOn:   d.time(pExpiresOn),
		Input:       d.blob(pInput),
		Output:      d.blob(pOutput),
		Progress:    d.blob(pProgress),
	}
	r.ErrorMessage = string(d.blob(pErrorMessage))
	r.CallbackURL = string(d.blob(pCallbackURL))
	r.IdempotencyKey = string(d.blob(pIdempotencyKey))
	etag := d.str("odata.etag")
	if d.err != nil {
		return nil, "", fmt.Errorf("tablestore: decode entity %q: %w", r.ID, d.err)
	}
	return r, etag, nil
}

type decoder struct {
	m   map[string]json.RawMessage
	err error
}

func (d *decoder) fail(name string, err error) {
	if d.err == nil {
		d.err = fmt.Errorf("property %s: %w", name, err)
	}
}

func (d *decoder) str(name string) string {
	raw, ok := d.m[name]
	if !ok {
		return ""
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		d.fail(name, err)
	}
	return s
}

func (d *decoder) int(name string) int {
	raw, ok := d.m[name]
	if !ok {
		return 0
	}
	var n int
	if err := json.Unmarshal(raw, &n); err != nil {
		// Int64 properties come as strings.
		var s string
		if json.Unmarshal(raw, &s) == nil {
			if n, err = strconv.Atoi(s); err == nil {
				return n
			}
		}
		d.fail(name, err)
	}
	return n
}

func (d *decoder) time(name string) time.Time {
	s := d.str(name)
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		d.fail(name, err)
	}
	return t.UTC()
}

// blob reads what props.blob wrote: the string property, or the numbered
// binary ones; nil when there is neither.
func (d *decoder) blob(name string) []byte {
	if _, ok := d.m[name]; ok {
		return []byte(d.str(name))
	}
	var out []byte
	for i := 0; ; i++ {
		key := name + strconv.Itoa(i)
		if _, ok := d.m[key]; !ok {
			return out
		}
		b, err := base64.StdEncoding.DecodeString(d.str(key))
		if err != nil {
			d.fail(key, err)
			return nil
		}
		out = append(out, b...)
	}
}

// utf16Len returns how many UTF-16 code units s takes.
func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}

// quote renders s as an OData string literal: in single quotes, a quote
// doubled.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
