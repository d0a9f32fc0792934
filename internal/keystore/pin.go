package keystore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// maxPIN bounds a PIN file: PINs are short, and a wrong path (a log file, a
// device) must not be read whole.
const maxPIN = 1024

// ReadPIN reads a token's user PIN from path: the file's content without its
// trailing line ending. The PIN comes from a file, never from a flag or the
// environment, so that it shows neither in the process list nor in
// /proc/PID/environ; errors name the file, never its content.
func ReadPIN(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keystore: PIN file: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, fmt.Errorf("keystore: PIN file: %w", err)
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("keystore: PIN file %s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxPIN+1))
	if err != nil {
		return nil, fmt.Errorf("keystore: PIN file: %w", err)
	}
	if len(b) > maxPIN {
		return nil, fmt.Errorf("keystore: PIN file %s is longer than %d bytes", path, maxPIN)
	}
	b = bytes.TrimRight(b, "\r\n")
	if len(b) == 0 {
		return nil, fmt.Errorf("keystore: PIN file %s is empty", path)
	}
	if bytes.ContainsAny(b, "\r\n\x00") {
		return nil, errors.New("keystore: PIN file " + path + " holds more than one line")
	}
	return b, nil
}
