package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/golang-migrate/migrate/v4"
	pgxmigrate "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/pkid/pkid/migrations"
)

// maintenanceDB is the database that every Postgres server has, where
// CREATE DATABASE can be run from.
const maintenanceDB = "postgres"

// migrateLockTimeout bounds the wait for another process's migration. Ours
// take well under a second; a minute covers a slow server.
const migrateLockTimeout = time.Minute

// Migrate brings the database at databaseURL to the newest schema in
// migrations/, creating the database first when it does not exist and the
// role may create it. It is idempotent (a schema already up to date is
// success) and safe to run from several processes at once: golang-migrate
// holds a Postgres advisory lock while it migrates, and a lost race to create
// the database counts as success. log may be nil.
//
// A database that cannot be reached gives an error wrapping
// pki.ErrUnavailable. Cancelling ctx stops between migrations.
func Migrate(ctx context.Context, databaseURL string, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return fmt.Errorf("store: parsing database URL: %w", err)
	}
	if cfg.Database == "" {
		return errors.New("store: the database URL names no database")
	}
	if err := ensureDatabase(ctx, cfg, log); err != nil {
		return err
	}

	sqlDB := stdlib.OpenDB(*cfg)
	defer sqlDB.Close()
	// The migrate driver pings without a context; ping first with ours so
	// that a dead server fails fast and cancellably.
	if err := sqlDB.PingContext(ctx); err != nil {
		return fmt.Errorf("store: connecting to %s: %w", cfg.Database, mapErr(err))
	}
	driver, err := pgxmigrate.WithInstance(sqlDB, &pgxmigrate.Config{})
	if err != nil {
		return fmt.Errorf("store: preparing migrations: %w", mapErr(err))
	}
	src, err := iofs.New(migrations.FS, ".")
	if err != nil {
		return fmt.Errorf("store: reading embedded migrations: %w", err)
	}
	m, err := migrate.NewWithInstance("iofs", src, cfg.Database, driver)
	if err != nil {
		return fmt.Errorf("store: preparing migrations: %w", err)
	}
	defer m.Close()
	m.Log = migrateLogger{log}
	m.LockTimeout = migrateLockTimeout

	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-ctx.Done():
			m.GracefulStop <- true
		case <-stop:
		}
	}()

	err = m.Up()
	var dirty migrate.ErrDirty
	switch {
	case errors.Is(err, migrate.ErrNoChange):
		err = nil
	case errors.As(err, &dirty):
		return fmt.Errorf("store: migration %d failed halfway in an earlier run and left the schema dirty; "+
			"repair it by hand, then force the version with the migrate tool: %w", dirty.Version, err)
	case err != nil:
		return fmt.Errorf("store: migrating: %w", mapErr(err))
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: migrating: %w", err)
	}
	version, _, err := m.Version()
	if err != nil {
		return fmt.Errorf("store: reading schema version: %w", mapErr(err))
	}
	log.Info("database schema is up to date", "database", cfg.Database, "version", version)
	return nil
}

// ensureDatabase creates cfg's database when it does not exist, from the
// maintenance database of the same server with the same credentials.
func ensureDatabase(ctx context.Context, cfg *pgx.ConnConfig, log *slog.Logger) error {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err == nil {
		return conn.Close(ctx)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != codeInvalidCatalogName {
		return fmt.Errorf("store: connecting to %s: %w", cfg.Database, mapErr(err))
	}

	mcfg := cfg.Copy()
	mcfg.Database = maintenanceDB
	mconn, err := pgx.ConnectConfig(ctx, mcfg)
	if err != nil {
		return fmt.Errorf("store: database %s does not exist, and connecting to %s to create it failed: %w",
			cfg.Database, maintenanceDB, mapErr(err))
	}
	defer mconn.Close(context.WithoutCancel(ctx))
	_, err = mconn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{cfg.Database}.Sanitize())
	switch {
	case err == nil:
		log.Info("created database", "database", cfg.Database)
	case errors.As(err, &pgErr) && (pgErr.Code == codeDuplicateDatabase || pgErr.Code == codeUniqueViolation):
		// Another process created it meanwhile.
	default:
		return fmt.Errorf("store: creating database %s: %w", cfg.Database, mapErr(err))
	}
	return nil
}

// migrateLogger writes golang-migrate's progress lines to slog.
type migrateLogger struct{ log *slog.Logger }

func (l migrateLogger) Printf(format string, v ...any) {
	l.log.Info(strings.TrimSpace(fmt.Sprintf(format, v...)), "component", "migrate")
}

func (l migrateLogger) Verbose() bool { return false }
