// Package testnode prepares what an in-process pkid node needs in tests: a
// fresh migrated database (internal/testdb) holding a CA hierarchy and a
// token key, and the configuration to serve it; a clock that stands still
// for the node, an administrator, and calls to its API. Integration tests of
// internal/app, internal/web and internal/webhook build their nodes from it,
// so that a change to how pkid is initialised is made once.
package testnode

import (
	"context"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/auth"
	"github.com/pkid/pkid/internal/ca"
	"github.com/pkid/pkid/internal/config"
	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/keystore"
	"github.com/pkid/pkid/internal/lint"
	"github.com/pkid/pkid/internal/store"
	"github.com/pkid/pkid/internal/testdb"
)

// PublicURL is the base URL written into the test CA's certificates.
const PublicURL = "http://pkid.test"

// Init creates a database, runs what `pkid init` does on it with passphrase,
// and returns an open store (closed when the test ends) and the
// configuration that serves it (migrations already applied).
func Init(tb testing.TB, passphrase []byte) (*store.DB, config.Config) {
	tb.Helper()
	ctx := context.Background()
	url := testdb.New(tb)
	db, err := store.Open(ctx, url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(db.Close)
	l, err := lint.New()
	if err != nil {
		tb.Fatal(err)
	}
	icfg := ca.InitConfig{Hierarchy: issuance.HierarchyConfig{PublicURL: PublicURL}}
	if _, _, err := ca.Init(ctx, db, icfg, keystore.Sealed(passphrase), l, time.Now()); err != nil {
		tb.Fatal(err)
	}
	if _, err := auth.EnsureKey(ctx, db, passphrase, time.Now()); err != nil {
		tb.Fatal(err)
	}
	cfg := config.Defaults()
	cfg.DatabaseURL = url
	cfg.PublicURL = PublicURL
	cfg.KeyPassphrase = passphrase
	cfg.AutoMigrate = false
	return db, cfg
}
