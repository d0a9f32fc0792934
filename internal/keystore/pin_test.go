package keystore_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pkid/pkid/internal/keystore"
)

func TestReadPIN(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for content, want := range map[string]string{"1234\n": "1234", "1234\r\n": "1234", "12 34": "12 34"} {
		got, err := keystore.ReadPIN(write("ok", content))
		if err != nil || string(got) != want {
			t.Errorf("ReadPIN(%q) = %q, %v; want %q", content, got, err, want)
		}
	}
	for name, content := range map[string]string{
		"empty":     "\n",
		"two lines": "secret-1\nsecret-2\n",
		"too long":  strings.Repeat("7", 2000),
	} {
		_, err := keystore.ReadPIN(write("bad", content))
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "777") {
			t.Errorf("%s: the error shows the file's content: %v", name, err)
		}
	}
	if _, err := keystore.ReadPIN(dir); err == nil {
		t.Error("a directory was read as a PIN file")
	}
	if _, err := keystore.ReadPIN(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file was read")
	}
}
