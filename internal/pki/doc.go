// Package pki is pkid's shared vocabulary: serial numbers, certificate and
// account records, revocation reasons and the domain errors that every other
// package speaks. It does no I/O and imports nothing of pkid's.
package pki
