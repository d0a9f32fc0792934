package store

// IssuancePolicySQL lets the external tests EXPLAIN the quota read.
const IssuancePolicySQL = issuancePolicySQL
