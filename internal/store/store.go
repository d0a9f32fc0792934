// Package store is pkid's Postgres: the queries, the transactions and the
// migrations runner behind the small interfaces that the ca, account and auth
// packages declare. It is the only package that speaks pgx; the driver's
// errors stop here and leave as pki errors (ErrNotFound, ErrAlreadyExists,
// ErrSerialCollision, ErrUnavailable, ...), so that nothing above has to know
// what a SQLSTATE is.
//
// Every write that changes state writes its audit event in the same
// transaction, so a change is never recorded without its audit entry or the
// other way round.
package store

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DB is pkid's database: a pgx connection pool and the queries run on it. It
// is safe for concurrent use.
type DB struct {
	pool       *pgxpool.Pool
	issued     group[issuedRow]  // MarkIssued's group commit
	pending    group[pendingRow] // CreatePending's
	tokenReads group[tokenRead]  // TokenAndAccount's group read
}

// Option adjusts how Open connects.
type Option func(*pgxpool.Config)

// WithMaxConns caps the pool at n connections (n > 0). The default is
// max(8, 4*GOMAXPROCS): issuance spends most of its time waiting on commits,
// so a few connections per core keep the CPU busy without crowding the
// server's max_connections.
func WithMaxConns(n int32) Option {
	return func(c *pgxpool.Config) {
		if n > 0 {
			c.MaxConns = n
		}
	}
}

// WithConnectTimeout bounds how long one connection attempt may take (dial,
// TLS and authentication). The default, when the URL has no connect_timeout,
// is 5 seconds, so that a database that drops packets makes requests fail
// with ErrUnavailable instead of hanging.
func WithConnectTimeout(d time.Duration) Option {
	return func(c *pgxpool.Config) {
		if d > 0 {
			c.ConnConfig.ConnectTimeout = d
		}
	}
}

// defaultConnectTimeout applies when neither the URL nor an Option sets one.
const defaultConnectTimeout = 5 * time.Second

// Open returns a pool for databaseURL (a postgres:// URL or a key=value
// connection string). It does not connect: the pool dials on first use, so
// that pkid can start and report itself unready while the database is down.
// Call Ping to find out whether the database answers. The pool caches
// prepared statements per connection (pgx's default QueryExecModeCacheStatement).
func Open(ctx context.Context, databaseURL string, opts ...Option) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		// pgconn redacts the password in parse errors.
		return nil, fmt.Errorf("store: parsing database URL: %w", err)
	}
	cfg.MaxConns = int32(max(8, 4*runtime.GOMAXPROCS(0)))
	cfg.MinConns = 0
	cfg.MaxConnIdleTime = 5 * time.Minute
	cfg.HealthCheckPeriod = 30 * time.Second
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeCacheStatement
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "pkid"
	}
	for _, o := range opts {
		o(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: creating pool: %w", mapErr(err))
	}
	db := &DB{pool: pool}
	db.issued.what, db.issued.flush = "marking certificates issued", db.flushIssued
	db.pending.what, db.pending.flush = "recording pending certificates", db.flushPending
	db.tokenReads.what, db.tokenReads.flush = "reading tokens", db.readTokens
	return db, nil
}

// Close closes every connection of the pool, waiting for the ones in use to
// be released.
func (db *DB) Close() { db.pool.Close() }

// Ping checks that the database answers a query; /readyz uses it. A database
// that cannot be reached gives an error wrapping pki.ErrUnavailable.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.pool.Ping(ctx); err != nil {
		return fmt.Errorf("store: ping: %w", mapErr(err))
	}
	return nil
}

// Pool returns the underlying pool, for wiring its statistics into metrics.
// Queries belong in this package, not through the pool.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// InTx runs fn in a transaction (READ COMMITTED), committing when fn returns
// nil and rolling back otherwise. fn must do all its work through tx. Driver
// errors are mapped to pki errors; any other error that fn returns (a pki
// error, the error of a change callback) comes back unchanged.
func (db *DB) InTx(ctx context.Context, fn func(pgx.Tx) error) error {
	if err := pgx.BeginFunc(ctx, db.pool, fn); err != nil {
		return mapErr(err)
	}
	return nil
}

// errNotPending is returned by MarkIssued for a certificate that exists but
// is issued already: a second signature for one serial must never be stored.
var errNotPending = errors.New("store: certificate is not pending")
