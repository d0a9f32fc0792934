package auth

import (
	"context"
	"errors"
	"sync"

	"github.com/pkid/pkid/internal/pki"
)

// memStore is an in-memory Store and KeyStore for this package's unit tests.
// What is under test here is the token logic, not the database; the Postgres
// implementation has its own tests in the store package.
type memStore struct {
	mu       sync.Mutex
	tokens   map[string]*pki.Token
	accounts map[string]*pki.Account
	keys     []*pki.TokenKeyRecord
	audit    []pki.AuditEvent

	tokenErr   error // returned by Token when set
	accountErr error // returned by Account (and TokenAndAccount) when set
	keysErr    error // returned by TokenKeys when set
	insertErr  error // returned by InsertTokenKey when set
	// beforeInsert, when set, runs inside InsertTokenKey before the insert,
	// to simulate another process winning the race.
	beforeInsert func(m *memStore)
}

func newMemStore() *memStore {
	return &memStore{tokens: map[string]*pki.Token{}, accounts: map[string]*pki.Account{}}
}

func (m *memStore) Token(_ context.Context, id string) (*pki.Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tokenErr != nil {
		return nil, m.tokenErr
	}
	t, ok := m.tokens[id]
	if !ok {
		return nil, pki.ErrNotFound
	}
	c := *t
	return &c, nil
}

func (m *memStore) TokenAndAccount(ctx context.Context, tokenID, accountID string) (*pki.Token, *pki.Account, error) {
	t, err := m.Token(ctx, tokenID)
	if err != nil {
		return nil, nil, err
	}
	a, err := m.Account(ctx, accountID)
	switch {
	case errors.Is(err, pki.ErrNotFound):
		return t, nil, nil
	case err != nil:
		return nil, nil, err
	}
	return t, a, nil
}

func (m *memStore) Account(_ context.Context, id string) (*pki.Account, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.accountErr != nil {
		return nil, m.accountErr
	}
	a, ok := m.accounts[id]
	if !ok {
		return nil, pki.ErrNotFound
	}
	c := *a
	return &c, nil
}

func (m *memStore) TokenKeys(context.Context) ([]*pki.TokenKeyRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.keysErr != nil {
		return nil, m.keysErr
	}
	var out []*pki.TokenKeyRecord
	for _, k := range m.keys {
		if k.RetiredAt == nil {
			c := *k
			out = append(out, &c)
		}
	}
	return out, nil
}

// InsertTokenKey behaves like the database: at most one key is inserted per
// "init"; inserting when a current key exists is ErrAlreadyExists.
func (m *memStore) InsertTokenKey(_ context.Context, k *pki.TokenKeyRecord, ev pki.AuditEvent) error {
	if m.beforeInsert != nil {
		m.beforeInsert(m)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.insertErr != nil {
		return m.insertErr
	}
	for _, old := range m.keys {
		if old.RetiredAt == nil {
			return pki.ErrAlreadyExists
		}
	}
	c := *k
	m.keys = append(m.keys, &c)
	m.audit = append(m.audit, ev)
	return nil
}
