package audit

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func ptr(s string) *string { return &s }

// golden is an event as Postgres prints it: jsonb with spaces after ':'
// and ',', keys in jsonb's order (shorter first), "\n" as a short escape.
func golden() Record {
	return Record{
		ID:         42,
		OccurredAt: time.Date(2025, 3, 1, 13, 34, 56, 789012000, time.FixedZone("CET", 3600)),
		Actor:      "account:0b9c7d1e-2f3a-4b5c-8d6e-7f8091a2b3c4",
		Action:     "certificate.issued",
		Outcome:    "success",
		AccountID:  ptr("0b9c7d1e-2f3a-4b5c-8d6e-7f8091a2b3c4"),
		Serial:     ptr("1a2b"),
		Detail:     []byte(`{"a": [1, 2.50, true, null], "n": 12345678901234567890, "cn": "café \"q\" \\ \n</x>"}`),
	}
}

// The expected bytes and hashes were computed apart from this code (Python's
// hashlib over the literal below), so that a change of format cannot pass
// unnoticed: it would orphan every chain already stored.
const (
	goldenCanonical = `{"account_id":"0b9c7d1e-2f3a-4b5c-8d6e-7f8091a2b3c4","action":"certificate.issued",` +
		`"actor":"account:0b9c7d1e-2f3a-4b5c-8d6e-7f8091a2b3c4","detail":{"a":[1,2.50,true,null],` +
		`"cn":"café \"q\" \\ \u000a</x>","n":12345678901234567890},"id":42,` +
		`"occurred_at":"2025-03-01T12:34:56.789012Z","outcome":"success","request_id":null,"serial":"1a2b"}`
	goldenContent = "09f083302ab5bd81807014d1492d6e0e5741f01b40d5195e9d96bae18776bdac"
	goldenChain   = "7c3e64a99483375f78de59c64bb53d709136ba47f91cd4cf0282adece4ee1ed5" // after the zero hash
	goldenGap79   = "cd2b44c722eb43507fb32afb8f6941de155b0344439376427dae0745a5fa7f26" // ids 7 to 9
)

func TestCanonicalGolden(t *testing.T) {
	enc, err := Canonical(golden())
	if err != nil {
		t.Fatal(err)
	}
	if string(enc) != goldenCanonical {
		t.Fatalf("canonical encoding\n got %s\nwant %s", enc, goldenCanonical)
	}
	content, err := ContentHash(golden())
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(content); got != goldenContent {
		t.Errorf("content hash %s, want %s", got, goldenContent)
	}
	for _, prev := range [][]byte{nil, make([]byte, HashSize)} {
		if got := hex.EncodeToString(ChainHash(prev, content)); got != goldenChain {
			t.Errorf("chain hash after %x: %s, want %s", prev, got, goldenChain)
		}
	}
	if got := hex.EncodeToString(GapHash(7, 9)); got != goldenGap79 {
		t.Errorf("gap hash %s, want %s", got, goldenGap79)
	}
}

// Every stored byte that carries meaning changes the content hash; what
// only changes the notation (jsonb's spacing and key order, the time zone
// the driver reads the time in) does not.
func TestContentHashSensitivity(t *testing.T) {
	base, err := ContentHash(golden())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func(*Record)
		same   bool
	}{
		{"id", func(r *Record) { r.ID++ }, false},
		{"time by a microsecond", func(r *Record) { r.OccurredAt = r.OccurredAt.Add(time.Microsecond) }, false},
		{"actor", func(r *Record) { r.Actor = "admin:mallory" }, false},
		{"action", func(r *Record) { r.Action = "certificate.revoked" }, false},
		{"outcome", func(r *Record) { r.Outcome = "failure" }, false},
		{"account to NULL", func(r *Record) { r.AccountID = nil }, false},
		{"serial NULL to empty", func(r *Record) { r.Serial = nil }, false},
		{"request id NULL to empty", func(r *Record) { r.RequestID = ptr("") }, false},
		{"one byte of detail", func(r *Record) { r.Detail = bytes.Replace(r.Detail, []byte("café"), []byte("cafe"), 1) }, false},
		{"number literal", func(r *Record) {
			r.Detail = bytes.Replace(r.Detail, []byte("12345678901234567890"), []byte("12345678901234567891"), 1)
		}, false},
		{"trailing zero", func(r *Record) { r.Detail = bytes.Replace(r.Detail, []byte("2.50"), []byte("2.5"), 1) }, false},
		{"added key", func(r *Record) { r.Detail = bytes.Replace(r.Detail, []byte(`{"a"`), []byte(`{"z": 1, "a"`), 1) }, false},
		{"time zone", func(r *Record) { r.OccurredAt = r.OccurredAt.UTC() }, true},
		{"spacing and key order", func(r *Record) {
			r.Detail = []byte(`{ "cn" : "caf\u00e9 \"q\" \\ \u000a\u003c/x>" ,"n":12345678901234567890,"a":[1 ,2.50, true,null] }`)
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := golden()
			tt.change(&r)
			got, err := ContentHash(r)
			if err != nil {
				t.Fatal(err)
			}
			if same := bytes.Equal(got, base); same != tt.same {
				t.Errorf("hash unchanged = %v, want %v", same, tt.same)
			}
		})
	}
}

func TestCanonicalJSON(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty object", `{}`, `{}`},
		{"keys in byte order, nested", `{"b": {"d": 1, "c": [{"f": 0, "e": 0}]}, "a": "", "B": 1}`, `{"B":1,"a":"","b":{"c":[{"e":0,"f":0}],"d":1}}`},
		{"repeated key keeps the last", `{"a": 1, "a": 2}`, `{"a":2}`},
		{"control characters", `{"s": "\u0000\u001f\t\r\n\b\f"}`, `{"s":"\u0000\u001f\u0009\u000d\u000a\u0008\u000c"}`},
		{"no HTML escaping", `{"s": "<a href=\"x\">&amp;</a>"}`, `{"s":"<a href=\"x\">&amp;</a>"}`},
		{"non-ASCII written as UTF-8", `{"s": "\u00e9\u2028😀"}`, "{\"s\":\"é\u2028😀\"}"},
		{"lone surrogate", `{"s": "\ud800"}`, "{\"s\":\"\uFFFD\"}"},
		{"numbers as written", `{"n": [-0, 1e3, 1.000, 12345678901234567890123]}`, `{"n":[-0,1e3,1.000,12345678901234567890123]}`},
		{"scalars", `[true, false, null, "x"]`, `[true,false,null,"x"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CanonicalJSON([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestCanonicalJSONRefuses(t *testing.T) {
	for name, in := range map[string]string{
		"empty":         ``,
		"not JSON":      `{"a":`,
		"trailing data": `{} {}`,
		"trailing junk": `{"a":1}x`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := CanonicalJSON([]byte(in)); err == nil {
				t.Errorf("CanonicalJSON(%q) succeeded", in)
			}
			r := golden()
			r.Detail = []byte(in)
			if _, err := ContentHash(r); err == nil || !strings.Contains(err.Error(), "event 42") {
				t.Errorf("ContentHash error %v does not name the event", err)
			}
		})
	}
}

// No event encodes to a gap: the two kinds of link cannot be swapped.
func TestGapContentIsNotAnEvent(t *testing.T) {
	enc, err := Canonical(golden())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(enc, []byte(`{"account_id":`)) || !bytes.HasPrefix(GapContent(1, 2), []byte(`{"gap":`)) {
		t.Errorf("prefixes: %s and %s", enc[:14], GapContent(1, 2))
	}
	if bytes.Equal(GapHash(1, 2), GapHash(1, 3)) || bytes.Equal(GapHash(1, 2), GapHash(2, 2)) {
		t.Error("gap hashes do not depend on the range")
	}
}

// Text columns hold valid UTF-8 in Postgres, but the encoding is total:
// an invalid byte is written as U+FFFD, never dropped or passed through.
func TestCanonicalStrings(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", `"plain"`},
		{"a\xffb", "\"a\uFFFDb\""},
		{"\xe2\x82", "\"\uFFFD\uFFFD\""},
		{"tab\there \"q\" \\ \x7f é", `"tab\u0009here \"q\" \\ ` + "\x7f é\""},
		{"", `""`},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		writeString(&b, tt.in)
		if b.String() != tt.want {
			t.Errorf("writeString(%q) = %s, want %s", tt.in, b.String(), tt.want)
		}
	}
}

// FuzzCanonicalJSON: the canonical form of any JSON is JSON, means the same
// thing, and is its own canonical form.
func FuzzCanonicalJSON(f *testing.F) {
	for _, seed := range []string{`{}`, `{"b": [1, 2.50, {"d": null, "c": "\u0001é"}], "a": true}`, `"x"`, `[]`, `{"a":1,"a":2}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		canon, err := CanonicalJSON(doc)
		if err != nil {
			return
		}
		again, err := CanonicalJSON(canon)
		if err != nil {
			t.Fatalf("canonical form %s does not parse: %v", canon, err)
		}
		if !bytes.Equal(again, canon) {
			t.Fatalf("not idempotent:\n%s\n%s", canon, again)
		}
		var a, b any
		if json.Unmarshal(doc, &a) != nil || json.Unmarshal(canon, &b) != nil {
			return // numbers beyond float64 or the like: the text check above holds
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("meaning changed:\n%s\n%s", doc, canon)
		}
	})
}
