package main

import (
	"context"
	"flag"

	"github.com/pkid/pkid/internal/app"
	"github.com/pkid/pkid/internal/config"
	"github.com/pkid/pkid/internal/keystore"
	"github.com/pkid/pkid/internal/lint"
	"github.com/pkid/pkid/internal/store"
)

// loadKeyConfig is loadConfig for the commands that open the CA's keys: it
// binds the PKCS#11 flags too, and with rootToken those of the root's own
// token (init and ca rotate, the commands that use the root key). The key
// passphrase is required.
func loadKeyConfig(env config.Getenv, fs *flag.FlagSet, args []string, rootToken bool) (config.Config, error) {
	cfg, err := config.FromEnv(env)
	if err != nil {
		return cfg, err
	}
	pkcs11Flags(fs, &cfg)
	if rootToken {
		pkcs11RootFlags(fs, &cfg)
	}
	return loadConfigFrom(&cfg, fs, args, true)
}

// caHandles is what an operator command holds open while it works on the CA:
// the database, the key store (on the PKCS#11 token when one is configured)
// and, for the commands that sign with the root key, the linter and the
// root's sealed key when it lives in a file. Close releases them in the
// reverse order of opening.
type caHandles struct {
	db   *store.DB
	keys *keystore.Store
	lint *lint.Linter
	// rootKey is the content of --root-key, nil when the root key is in
	// the database or on a token.
	rootKey []byte
}

// openCA opens the database and the CA's keys; initKeys is app.OpenKeys's
// init (create the software key store when there is none).
func openCA(ctx context.Context, cfg config.Config, initKeys bool) (*caHandles, error) {
	db, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	keys, err := app.OpenKeys(cfg, initKeys)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &caHandles{db: db, keys: keys}, nil
}

// openRootCA is openCA for the commands that sign with the root key (init,
// ca rotate): it reads the sealed root key from rootKeyFile first, unless
// that is "", and makes the linter, since lint before signing holds for CA
// certificates as for issuance.
func openRootCA(ctx context.Context, cfg config.Config, rootKeyFile string, initKeys bool) (*caHandles, error) {
	rootKey, err := readRootKey(rootKeyFile)
	if err != nil {
		return nil, err
	}
	h, err := openCA(ctx, cfg, initKeys)
	if err != nil {
		return nil, err
	}
	h.rootKey = rootKey
	if h.lint, err = lint.New(); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

// Close closes the key store, then the database.
func (h *caHandles) Close() {
	h.keys.Close()
	h.db.Close()
}
