package redact

import "testing"

func TestURLQueriesAndAll(t *testing.T) {
	for _, c := range []struct{ in, queries, all string }{
		{"GET https://acct.queue.core.windows.net/q/messages?sv=2021&sig=abc%2F&se=x: 403",
			"GET https://acct.queue.core.windows.net/q/messages?REDACTED 403",
			"GET https://acct.queue.core.windows.net/q/messages?REDACTED 403"},
		{"sb://ns.servicebus.windows.net/q?token=t1 and amqps://h/x?y=z",
			"sb://ns.servicebus.windows.net/q?REDACTED and amqps://h/x?REDACTED",
			"sb://ns.servicebus.windows.net/q?REDACTED and amqps://h/x?REDACTED"},
		{"Endpoint=sb://ns/;SharedAccessKeyName=k;SharedAccessKey=c2VjcmV0",
			"Endpoint=sb://ns/;SharedAccessKeyName=k;SharedAccessKey=c2VjcmV0",
			"Endpoint=sb://ns/;SharedAccessKeyName=k;SharedAccessKey=REDACTED"},
		{"amqp://guest:hunter2@127.0.0.1:5672/", "amqp://guest:hunter2@127.0.0.1:5672/", "amqp://guest:REDACTED@127.0.0.1:5672/"},
		{"queue orders: 3 messages", "queue orders: 3 messages", "queue orders: 3 messages"},
	} {
		if got := URLQueries(c.in); got != c.queries {
			t.Errorf("URLQueries(%q) = %q; want %q", c.in, got, c.queries)
		}
		if got := All(c.in); got != c.all {
			t.Errorf("All(%q) = %q; want %q", c.in, got, c.all)
		}
	}
}

func TestJSONMembers(t *testing.T) {
	in := `{"AccountKey":"k==","name":"x","password":"p\"q"}`
	want := `{"AccountKey":"REDACTED","name":"x","password":"REDACTED"}`
	if got := string(JSONMembers([]byte(in))); got != want {
		t.Errorf("JSONMembers = %s; want %s", got, want)
	}
}
