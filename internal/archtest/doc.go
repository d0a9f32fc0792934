// Package archtest holds no code: its test checks that the dependency
// direction of STYLE.md holds (HTTP → use case → policy/issuance → store),
// so that the layout cannot drift one import at a time.
package archtest
