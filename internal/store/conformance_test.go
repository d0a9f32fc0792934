package store_test

import (
	"github.com/pkid/pkid/internal/account"
	"github.com/pkid/pkid/internal/auth"
	"github.com/pkid/pkid/internal/ca"
	"github.com/pkid/pkid/internal/store"
)

// The store implements every interface its consumers declare. The check
// lives in a test so that store itself imports none of them.
var (
	_ ca.Store          = (*store.DB)(nil)
	_ ca.HierarchyStore = (*store.DB)(nil)
	_ account.Store     = (*store.DB)(nil)
	_ auth.Store        = (*store.DB)(nil)
	_ auth.KeyStore     = (*store.DB)(nil)
)
