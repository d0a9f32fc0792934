package config

import "testing"

// TestDBMaxConns: PKID_DB_MAX_CONNS is unset (the store's default), or a
// number of connections within [MinDBConns, MaxDBConns]; anything else
// stops the command before it connects.
func TestDBMaxConns(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		want        int
		loadErr     bool // FromEnv refuses it
		invalid     bool // Validate refuses it
	}{
		{name: "unset", value: "", want: 0},
		{name: "the minimum", value: "4", want: 4},
		{name: "sixteen", value: "16", want: 16},
		{name: "the maximum", value: "1000", want: 1000},
		{name: "below the minimum", value: "3", want: 3, invalid: true},
		{name: "negative", value: "-8", want: -8, invalid: true},
		{name: "above the maximum", value: "1001", want: 1001, invalid: true},
		{name: "not a number", value: "eight", loadErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"PKID_KEY_PASSPHRASE": "p"}
			if tc.value != "" {
				env["PKID_DB_MAX_CONNS"] = tc.value
			}
			c, err := FromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
			if tc.loadErr {
				if err == nil {
					t.Fatalf("FromEnv accepted PKID_DB_MAX_CONNS=%q", tc.value)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.DBMaxConns != tc.want {
				t.Errorf("DBMaxConns = %d, want %d", c.DBMaxConns, tc.want)
			}
			if err := c.Validate(true); (err != nil) != tc.invalid {
				t.Errorf("Validate: %v, want an error: %v", err, tc.invalid)
			}
		})
	}
}
