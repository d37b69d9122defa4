package bindings

import (
	"encoding/json"
	"errors"
	"testing"
)

type order struct {
	ID    int    `json:"id"`
	Items []item `json:"items"`
}
type item struct{ SKU string }

func TestBinders(t *testing.T) {
	s, err := NewBinder[string]()([]byte("héllo"))
	if err != nil || s != "héllo" {
		t.Errorf("string: %q %v", s, err)
	}
	b, err := NewBinder[[]byte]()([]byte{0, 1, 2})
	if err != nil || len(b) != 3 {
		t.Errorf("[]byte: %v %v", b, err)
	}
	o, err := NewBinder[order]()([]byte(`{"id": 7, "items": [{"SKU": "a"}]}`))
	if err != nil || o.ID != 7 || o.Items[0].SKU != "a" {
		t.Errorf("struct: %+v %v", o, err)
	}
	p, err := NewBinder[*order]()([]byte(`{"id": 8}`))
	if err != nil || p.ID != 8 {
		t.Errorf("pointer: %+v %v", p, err)
	}
	raw, err := NewBinder[json.RawMessage]()([]byte(`[1,2]`))
	if err != nil || string(raw) != "[1,2]" {
		t.Errorf("raw: %s %v", raw, err)
	}
	m, err := NewBinder[map[string]any]()([]byte(`{"a":1}`))
	if err != nil || m["a"] != 1.0 {
		t.Errorf("map: %v %v", m, err)
	}
}

func TestBindErrors(t *testing.T) {
	for name, f := range map[string]func() error{
		"bad json":      func() error { _, err := NewBinder[order]()([]byte(`{"id": `)); return err },
		"wrong type":    func() error { _, err := NewBinder[order]()([]byte(`{"id": "seven"}`)); return err },
		"raw not json":  func() error { _, err := NewBinder[json.RawMessage]()([]byte(`nope`)); return err },
		"bad base64":    func() error { _, err := Base64.Decode([]byte("not base64!")); return err },
		"base64 of raw": func() error { _, err := Base64.Decode([]byte(`{"id":1}`)); return err },
	} {
		var be *Error
		if err := f(); !errors.As(err, &be) {
			t.Errorf("%s: want *bindings.Error, got %v", name, err)
		}
	}
}

func TestEncodingRoundTrip(t *testing.T) {
	for _, e := range []Encoding{Base64, None} {
		in := []byte(`{"siteUrl":"https://contoso.sharepoint.com/sites/a","n":"ü"}`)
		out, err := e.Decode(e.Encode(in))
		if err != nil || string(out) != string(in) {
			t.Errorf("%s: %s %v", e, out, err)
		}
	}
	if got := string(Base64.Encode([]byte("hi"))); got != "aGk=" {
		t.Errorf("base64 = %q", got)
	}
	if _, err := ParseEncoding("BASE64"); err != nil {
		t.Error(err)
	}
	if _, err := ParseEncoding("utf8"); err == nil {
		t.Error("utf8 must be rejected")
	}
}

// FuzzBind: binding never panics, and a payload that binds re-encodes to
// something that binds to the same value.
func FuzzBind(f *testing.F) {
	f.Add([]byte(`{"id": 1, "items": [{"SKU": "x"}]}`))
	f.Add([]byte(`{"id": 1e400}`))
	f.Add([]byte(`eyJpZCI6IDF9`))
	f.Add([]byte{0xff, 0xfe})
	f.Add([]byte("eyJpZCI6 IDF9\r\n"))                   // .NET line-broken base64
	f.Add([]byte("\teyJp\r\nZCI6IDF9 "))                 // whitespace anywhere
	f.Add([]byte("\xef\xbb\xbf{\"id\": 2}"))             // JSON after a byte-order mark
	f.Add([]byte("77u/eyJpZCI6IDN9"))                    // base64 of BOM + JSON
	f.Add([]byte("\xef\xbb\xbf\xef\xbb\xbf{\"id\": 4}")) // two marks: not JSON
	bind := NewBinder[order]()
	f.Fuzz(func(t *testing.T, data []byte) {
		if p, err := Base64.Decode(data); err == nil {
			data = p
		}
		o, err := bind(data)
		if err != nil {
			var be *Error
			if !errors.As(err, &be) {
				t.Fatalf("error is not a *bindings.Error: %v", err)
			}
			return
		}
		again, _ := json.Marshal(o)
		o2, err := bind(again)
		if err != nil || o2.ID != o.ID || len(o2.Items) != len(o.Items) {
			t.Fatalf("round trip: %+v -> %s -> %+v %v", o, again, o2, err)
		}
	})
}

// TestDotNetBodies: what .NET producers write and .NET reads binds here too:
// base64 with white space or line breaks anywhere (Convert.FromBase64String
// ignores space, tab, CR and LF) and JSON after a UTF-8 byte-order mark.
func TestDotNetBodies(t *testing.T) {
	const want = `{"id":1}`
	for _, body := range []string{"eyJpZCI6MX0=", "eyJp ZCI6MX0=", "eyJp\tZCI6\r\nMX0=", " eyJpZCI6MX0= \r\n",
		"eyJpZCI6\nMX0=\n", "e y J p Z C I 6 M X 0 ="} {
		got, err := Base64.Decode([]byte(body))
		if err != nil || string(got) != want {
			t.Errorf("Decode(%q) = %q, %v; want %q", body, got, err, want)
		}
	}
	if _, err := Base64.Decode([]byte("eyJp\vZCI6MX0=")); err == nil {
		t.Error("a vertical tab is not white space to .NET; want an error")
	}
	const bom = "\xef\xbb\xbf"
	o, err := NewBinder[order]()([]byte(bom + `{"id": 5}`))
	if err != nil || o.ID != 5 {
		t.Errorf("struct after BOM: %+v %v", o, err)
	}
	p, err := Base64.Decode([]byte("77u/eyJpZCI6IDZ9")) // base64 of BOM + {"id": 6}
	if err != nil {
		t.Fatal(err)
	}
	if o, err = NewBinder[order]()(p); err != nil || o.ID != 6 {
		t.Errorf("base64 of BOM + JSON: %+v %v", o, err)
	}
	raw, err := NewBinder[json.RawMessage]()([]byte(bom + `[1]`))
	if err != nil || string(raw) != `[1]` {
		t.Errorf("raw after BOM: %q %v (want the JSON without the mark)", raw, err)
	}
	// Strings and bytes are the payload as is, mark included, as WebJobs
	// passes them.
	if s, _ := NewBinder[string]()([]byte(bom + "hi")); s != bom+"hi" {
		t.Errorf("string: %q", s)
	}
	if b, _ := NewBinder[[]byte]()([]byte(bom + "hi")); string(b) != bom+"hi" {
		t.Errorf("[]byte: %q", b)
	}
	if _, err := NewBinder[order]()([]byte(bom + bom + `{"id": 7}`)); err == nil {
		t.Error("only one leading mark is skipped")
	}
}
